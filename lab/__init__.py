"""The upgrader test lab: Debian 12 guests under vagrant-lxc on a private bridge.

Modules:
    config     -- names, addresses, paths (the lab's single source of truth)
    shell      -- subprocess helpers and the timings record
    install    -- host packages and host LXC settings
    box        -- the locally built Debian 12 vagrant-lxc box
    net        -- the upgbr0 bridge (no NAT, no forwarding)
    vagrant    -- `vagrant up/destroy/ssh-config` wrappers
    inventory  -- inventories/vagrant.yml, .lab/known_hosts, .lab/ssh_config
    seed       -- put hosts back to the baseline releases (via lxc-attach)
    faults     -- kill/start, freeze/unfreeze, cut/restore, sshd_stop/sshd_start
    control    -- the commands (`python -m lab CMD`, `invoke lab.CMD`)
"""
