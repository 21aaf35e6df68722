package main

import (
	"encoding/json"
	"errors"
	"io"

	"github.com/spf13/pflag"
)

// output is the --output flag of every command that prints: text for
// people, json for programs. The value is checked as the flag is parsed,
// so a wrong one is refused (exit 2) before any work starts.
type output string

const (
	outputText output = "text"
	outputJSON output = "json"
)

func (o *output) String() string { return string(*o) }
func (o *output) Type() string   { return "text|json" }

func (o *output) Set(v string) error {
	switch output(v) {
	case outputText, outputJSON:
		*o = output(v)
		return nil
	}
	return errors.New("must be text or json")
}

func (o output) json() bool { return o == outputJSON }

// addOutput binds --output (-o) to o, text by default; what says what
// the json form is.
func addOutput(fs *pflag.FlagSet, o *output, what string) {
	*o = outputText
	usage := "output format: text or json"
	if what != "" {
		usage += " (" + what + ")"
	}
	fs.VarP(o, "output", "o", usage)
}

// writeJSON is how commands print one JSON document: indented, for people
// who read it too.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
