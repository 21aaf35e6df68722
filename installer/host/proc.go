package host

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// Processes are looked up in the real /proc: whatever the root, they run on
// this machine.

// procStat returns a process's state letter and parent pid. The command name
// in /proc/PID/stat may contain spaces and parentheses, so the fields are
// read after its last ')'.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], ppid, true
}

// alive is true for a process that exists and has not exited: a zombie
// (exited, not yet reaped) still answers kill(pid, 0) but runs nothing.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	state, _, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

func cmdline(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// childOf finds a living child of ppid. A supervisor has at most one, the
// program it runs.
func childOf(ppid int) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, parent, ok := procStat(pid)
		if ok && parent == ppid && state != 'Z' && state != 'X' {
			return pid
		}
	}
	return 0
}
