#!/usr/bin/env bash
# The primary instance: `vmctl shell` with no name, driven through a
# pseudo-terminal (tmux), launches the instance named by client.primary-name
# (from the image of local.image.default, here the fast image) and opens a
# shell in it where a command runs; `stop` and `start` with no name act on
# it; client.primary-name names another instance.
. "$(dirname "$0")/lib.sh"

command -v tmux >/dev/null || fail "tmux is not installed (tools/install-deps.sh)"
TMUX_SOCK=$E2E_TMP/tmux.sock
tmux_() { tmux -S "$TMUX_SOCK" "$@"; }

primary_cleanup() {
	local rc=$?
	tmux_ kill-server 2>/dev/null
	(exit "$rc")
	e2e_cleanup
}
trap primary_cleanup EXIT

# SCREEN := what the terminal shows now.
SCREEN=
screen_shows() {
	SCREEN=$(tmux_ capture-pane -p -t primary-test 2>/dev/null)
	printf '%s\n' "$SCREEN" | grep -qE -- "$1"
}
expect_screen() {
	wait_until "$2" screen_shows "$1" || {
		e2e_log "the terminal shows:"
		printf '%s\n' "$SCREEN" | sed 's/^/  screen| /' >&2
		fail "the terminal never showed /$1/"
	}
}

vmctl get client.primary-name
expect_rc 0
expect_out '^primary$'
vmctl set "local.image.default=$FAST_IMAGE"
expect_rc 0

# After vmctl ends, the pane stays, saying how it ended.
tmux_ new-session -d -s primary-test -x 160 -y 50 \
	"env VMCTL_DATA='$VMCTL_DATA' '$VMCTL' shell; echo \"[vmctl exited \$?]\"; sleep 600"
expect_screen "Launched: primary" $((FAST_TIMEOUT + 60))
expect_screen 'ubuntu@primary' 60
# The typed line says $(hostname); only the shell's output says "primary".
tmux_ send-keys -t primary-test 'echo "ran-in-$(hostname)-as-$(id -un)"' Enter
expect_screen '^ran-in-primary-as-ubuntu' 60
tmux_ send-keys -t primary-test 'exit' Enter
expect_screen '\[vmctl exited 0\]' 60

expect_state primary Running
vmctl info primary
expect_rc 0
expect_out "Image: .*fast"

# stop and start with no name act on the primary instance.
vmctl stop
expect_rc 0
expect_state primary Stopped
vmctl start
expect_rc 0
expect_no_out "Launched"
expect_state primary Running

# Another instance made primary; an empty name means there is none.
launch_fast other
expect_rc 0
vmctl set client.primary-name=other
expect_rc 0
vmctl suspend
expect_rc 0
expect_state other Suspended
expect_state primary Running
vmctl set client.primary-name=
expect_rc 0
vmctl stop
expect_rc 2
expect_error "no primary instance"
expect_state primary Running

e2e_log PASS
