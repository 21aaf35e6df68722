package config

import (
	"sort"
	"strings"
)

// FieldError is one problem with one key, said so a person can fix it.
type FieldError struct {
	Path string // node.serverURL, k3s.extraArgs[2]
	Msg  string
}

func (e FieldError) Error() string { return e.Path + ": " + e.Msg }

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
	*es = append(*es, FieldError{Path: path, Msg: sprintf(format, args...)})
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
