package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"unicode/utf8"
)

// FieldError is one problem with one key, said so a person can fix it.
type FieldError struct {
	Path string // node.serverURL, k3s.extraArgs[2]
	Msg  string
	// From names where a value not from the file came from
	// (PERCH_NODE_ROLE, --role), since that is where it is fixed.
	From string
}

func (e FieldError) Error() string {
	if e.From != "" {
		return e.Path + " (from " + e.From + "): " + e.Msg
	}
	return e.Path + ": " + e.Msg
}

// FieldErrors reports every problem of a config at once, in key order.
type FieldErrors []FieldError

func (es FieldErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es *FieldErrors) add(path, format string, args ...any) {
	clipQuoted(format, args)
	*es = append(*es, FieldError{Path: path, Msg: sprintf(format, args...)})
}

// maxEcho is how much of a value a message repeats: enough to recognise
// it, never a whole file pasted into a key.
const maxEcho = 64

// clipQuoted clips the arguments a format quotes (%q): those are the
// values a person wrote, while %s and %v carry the explanation.
func clipQuoted(format string, args []any) {
	n := 0
	for i := 0; i < len(format)-1 && n < len(args); i++ {
		if format[i] != '%' {
			continue
		}
		i++
		if format[i] == '%' {
			continue
		}
		// a Stringer says itself how it shows (a Secret shows as ***)
		if _, ok := args[n].(fmt.Stringer); !ok && format[i] == 'q' {
			if v := reflect.ValueOf(args[n]); v.Kind() == reflect.String {
				args[n] = Clip(v.String())
			}
		}
		n++
	}
}

// Clip shortens a value a message echoes and says how long it was.
func Clip(s string) string { return clipTo(s, maxEcho) }

func clipTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:cut], len(s))
}

func (es FieldErrors) sorted() FieldErrors {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Path < es[j].Path })
	return es
}

// For returns the errors about one key, for the TUI to show next to its field.
func (es FieldErrors) For(path string) []FieldError {
	var out []FieldError
	for _, e := range es {
		if e.Path == path || strings.HasPrefix(e.Path, path+".") || strings.HasPrefix(e.Path, path+"[") {
			out = append(out, e)
		}
	}
	return out
}
