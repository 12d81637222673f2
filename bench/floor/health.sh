# Health wait shared by the floor and the pyinfra deploy (bash: it uses /dev/tcp, no curl needed).
# Usage: health PORT VERSION INTERVAL [DEADLINE_SECONDS]
# Passes when GET /health answers 200 with "status": "ok" and "version": VERSION, the same
# verification as upgrader's feedhandler checks (health + reports-version).
health() {
    local port=$1 version=$2 interval=$3 deadline=$((SECONDS + ${4:-20})) body
    while :; do
        body=$(exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && cat <&3) || body=
        case "$body" in
            "HTTP/1."?" 200 "*)
                case "$body" in *'"status": "ok"'*)
                    case "$body" in *"\"version\": \"$version\""*) return 0;; esac;;
                esac;;
        esac
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "health: no healthy $version on port $port: ${body##*$'\r\n'}" >&2
            return 1
        fi
        sleep "$interval"
    done
}
