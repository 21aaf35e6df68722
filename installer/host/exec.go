package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// errorTailLines is how much output a failed command contributes to its
// error: enough to show the cause, short enough to read in a terminal.
const errorTailLines = 20

// waitDelay bounds how long Run waits for output after the command exited or
// ctx ended: a daemon a command leaves behind may hold the pipe open forever.
const waitDelay = 10 * time.Second

// Run runs a program on this machine (not confined by the root: pass
// h.Path(...) for files under it) and returns its combined output. On failure
// the error names the command and carries the last lines of its output, so
// the person reading it sees why without a second run. Arguments appear in
// errors: pass secrets in files, not on command lines.
func (h *Host) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, _, err := h.run(ctx, name, args...)
	return out, err
}

// run is Run that also reports the exit code, for commands whose non-zero
// codes are answers (rc-service status) rather than failures; -1 when the
// command did not run or was killed.
func (h *Host) run(ctx context.Context, name string, args ...string) ([]byte, int, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if err == nil {
		return out.Bytes(), 0, nil
	}
	code := -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	if cerr := ctx.Err(); cerr != nil {
		err = fmt.Errorf("%w (%w)", cerr, err)
	}
	return out.Bytes(), code, fmt.Errorf("run %s: %w%s", commandLine(name, args), err, outputTail(out.Bytes(), errorTailLines))
}

// commandLine quotes only what needs it, so the error can be pasted into a
// shell to try again.
func commandLine(name string, args []string) string {
	words := make([]string, 0, 1+len(args))
	for _, w := range append([]string{name}, args...) {
		words = append(words, shellQuoteIfNeeded(w))
	}
	return strings.Join(words, " ")
}

func outputTail(out []byte, n int) string {
	t := lastLines(out, n)
	if len(bytes.TrimSpace(t)) == 0 {
		return " (no output)"
	}
	return "; last lines of output:\n" + strings.TrimRight(string(t), "\n")
}

// lastLines is the last n lines of b; a missing final newline does not count
// as an extra line.
func lastLines(b []byte, n int) []byte {
	if n <= 0 {
		return nil
	}
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	i := end
	for range n {
		j := bytes.LastIndexByte(b[:i], '\n')
		if j < 0 {
			return b
		}
		i = j
	}
	return b[i+1:]
}

// tailFile returns the last n lines of f, reading backwards from the end so
// a log of gigabytes costs only its tail.
func tailFile(f *os.File, n int) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	const chunk = 64 << 10
	var buf []byte
	for off := size; off > 0; {
		step := min(int64(chunk), off)
		off -= step
		part := make([]byte, step)
		if _, err := f.ReadAt(part, off); err != nil && err != io.EOF {
			return nil, err
		}
		buf = append(part, buf...)
		// n+1 newlines guarantee n whole lines even when the file ends
		// with one.
		if bytes.Count(buf, []byte{'\n'}) > n {
			break
		}
	}
	return lastLines(buf, n), nil
}

func shellQuoteIfNeeded(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return shellQuote(s)
}

// shellQuote makes s one word for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
