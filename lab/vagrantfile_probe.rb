# Evaluate the Vagrantfile without Vagrant or a provider installed: a stand-in for Vagrant.configure
# records what every machine sets, per provider, and prints it as JSON (tests/unit/test_vagrantfile.py).
# Usage: ruby lab/vagrantfile_probe.rb Vagrantfile
require "json"

MACHINES = {}

# Records assignments ("box" => ...) and calls ("network" => [[args, options], ...]) into one Hash.
class Recorder
  def initialize(sink)
    @sink = sink
  end

  def method_missing(name, *args, **options, &block)
    key = name.to_s
    return (@sink["set"] ||= {})[key.chomp("=")] = plain(args[0]) if key.end_with?("=")

    return Recorder.new(@sink) if %w[vm ssh].include?(key)

    case key
    when "define"
      block.call(Recorder.new(MACHINES[args[0].to_s] = {}))
    when "provider"
      sink = (@sink["providers"] ||= {})[args[0].to_s] = {}
      block.call(Recorder.new(sink), Recorder.new(sink)) # settings and override land in one place
    else
      (@sink[key] ||= []) << [args.map { |a| plain(a) }, options.to_h { |k, v| [k.to_s, plain(v)] }]
    end
    nil
  end

  def respond_to_missing?(*)
    true
  end

  private

  def plain(value)
    value.is_a?(Symbol) ? value.to_s : value
  end
end

module Vagrant
  def self.configure(_version)
    yield Recorder.new({})
  end
end

load ARGV.fetch(0)
puts JSON.generate(MACHINES)
