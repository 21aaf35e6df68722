package benchdata

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// hwmMarker starts the line a child prints its peak RSS on.
const hwmMarker = "perch-bench-child-vmhwm-kib="

// PrintPeakRSS prints this process's peak RSS for ChildPeakRSS. It is
// VmHWM, not the rusage a parent gets: Go starts children with vfork, and
// Linux carries the parent's high-water mark over exec.
func PrintPeakRSS() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			fmt.Printf("%s%s\n", hwmMarker, strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return nil
		}
	}
	return fmt.Errorf("/proc/self/status has no VmHWM")
}

// ChildPeakRSS reruns the test binary with only the named test, with env
// added, and returns the peak RSS in bytes that the test printed with
// PrintPeakRSS (the test binary's own baseline included).
func ChildPeakRSS(test string, env ...string) (int64, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.bench=^$")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s in a child: %v\n%s", test, err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, hwmMarker); ok {
			kib, err := strconv.ParseInt(v, 10, 64)
			return kib << 10, err
		}
	}
	return 0, fmt.Errorf("%s in a child printed no peak RSS:\n%s", test, out)
}
