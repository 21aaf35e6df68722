package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// Source says where a config comes from. Precedence, lowest first: built-in
// defaults, the file, PERCH_* variables, flags.
type Source struct {
	File  string    // a path, "-" for Stdin, or "" for none
	Stdin io.Reader // read when File is "-"
	Flags *pflag.FlagSet
}

// ErrInvalid wraps every config problem, so commands can exit 2 for it.
var ErrInvalid = errors.New("invalid config")

// InvalidError is the result of a config that cannot be used.
type InvalidError struct {
	Source string // the file name, or "config"
	Errs   FieldErrors
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("%s: %d problem(s):\n%s", e.Source, len(e.Errs), indent(e.Errs.Error()))
}

func (e *InvalidError) Unwrap() error { return ErrInvalid }

// InstallOnly are the keys only an install needs: where the k3s binary
// comes from is often given on the command line (--bundle of a USB stick
// whose mount path differs per site), not in the file that is reused.
var InstallOnly = []string{"k3s.binary"}

// Without is err less the problems at the given key paths: nil when none
// are left, as commands that do not install (status) want.
func Without(err error, paths ...string) error {
	var inv *InvalidError
	if !errors.As(err, &inv) {
		return err
	}
	var rest FieldErrors
	for _, fe := range inv.Errs {
		if !slices.Contains(paths, fe.Path) {
			rest = append(rest, fe)
		}
	}
	if len(rest) == 0 {
		return nil
	}
	return &InvalidError{Source: inv.Source, Errs: rest}
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

// Load reads, merges, decodes and validates a config.
func Load(src Source) (Appliance, error) {
	name := "config"
	var raw map[string]any
	if src.File != "" {
		data, err := readFile(src)
		if err != nil {
			return Appliance{}, err
		}
		name = src.File
		if src.File == "-" {
			name = "stdin"
		}
		raw, err = Parse(data, formatOf(src.File, data))
		if err != nil {
			return Appliance{}, &InvalidError{Source: name, Errs: FieldErrors{{Path: "(file)", Msg: err.Error()}}}
		}
	}
	origins, err := overlay(&raw, src)
	if err != nil {
		return Appliance{}, err
	}
	cfg, errs := decodeAppliance(raw, origins)
	if len(errs) > 0 {
		return cfg, &InvalidError{Source: name, Errs: errs}
	}
	return cfg, nil
}

// LoadBytes loads a config held in memory, as the TUI and tests do.
func LoadBytes(data []byte, format string) (Appliance, error) {
	raw, err := Parse(data, format)
	if err != nil {
		return Appliance{}, &InvalidError{Source: "config", Errs: FieldErrors{{Path: "(file)", Msg: err.Error()}}}
	}
	cfg, errs := decodeAppliance(raw, nil)
	if len(errs) > 0 {
		return cfg, &InvalidError{Source: "config", Errs: errs}
	}
	return cfg, nil
}

func decodeAppliance(raw map[string]any, origins map[string]string) (Appliance, FieldErrors) {
	cfg := Default()
	if raw == nil {
		raw = map[string]any{}
	}
	d := &decoder{origins: origins}
	d.decodeStruct("", raw, reflect.ValueOf(&cfg).Elem())
	// Validate what did decode too, so one run lists every problem; a key
	// that failed to decode kept its default and is not judged again.
	failed := map[string]bool{}
	for _, e := range d.errs {
		failed[e.Path] = true
	}
	errs := d.errs
	for _, e := range Validate(&cfg) {
		if !failed[e.Path] {
			e.From = origins[e.Path]
			errs = append(errs, e)
		}
	}
	return cfg, errs.sorted()
}

// maxConfigSize bounds what is read: a config is a few KiB, and a bound
// keeps a wrong path (a disk image, a log) from being read whole.
const maxConfigSize = 4 << 20

func readFile(src Source) ([]byte, error) {
	if src.File == "-" {
		if src.Stdin == nil {
			return nil, fmt.Errorf("config from stdin: no input")
		}
		return readBounded(src.Stdin, "stdin")
	}
	// Without O_NONBLOCK, opening a FIFO waits for a writer inside the
	// open syscall, where neither the context nor SIGTERM reaches it.
	f, err := os.OpenFile(src.File, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		// a socket cannot be opened at all (ENXIO): say what it is
		if fi, serr := os.Stat(src.File); serr == nil && !fi.Mode().IsRegular() {
			return nil, notRegular(src.File, fi.Mode())
		}
		return nil, fmt.Errorf("read config: %w (check the --config path)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(src.File, fi.Mode())
	}
	return readBounded(f, src.File)
}

// readBounded refuses more than maxConfigSize rather than cutting it off:
// a truncated file can still parse, as a different config.
func readBounded(r io.Reader, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", name, err)
	}
	if len(data) > maxConfigSize {
		return nil, &InvalidError{Source: name, Errs: FieldErrors{{Path: "(file)",
			Msg: fmt.Sprintf("is larger than %d MiB, too large for a config; check that it is the appliance config", maxConfigSize>>20)}}}
	}
	return data, nil
}

func notRegular(name string, m os.FileMode) error {
	kind := "a special file"
	switch {
	case m.IsDir():
		kind = "a directory"
	case m&os.ModeNamedPipe != 0:
		kind = "a named pipe"
	case m&os.ModeSocket != 0:
		kind = "a socket"
	case m&os.ModeDevice != 0:
		kind = "a device"
	}
	return &InvalidError{Source: name, Errs: FieldErrors{{Path: "(file)",
		Msg: "is " + kind + ", not a regular file; give the path of a regular YAML file"}}}
}

func formatOf(file string, data []byte) string {
	switch strings.ToLower(filepath.Ext(file)) {
	case ".toml":
		return "toml"
	case ".json":
		return "json"
	case ".yaml", ".yml":
		return "yaml"
	}
	// stdin or no extension: JSON is YAML, and TOML's [tables] are not
	if t := bytes.TrimSpace(data); bytes.HasPrefix(t, []byte("[")) && !bytes.HasPrefix(t, []byte("[{")) {
		return "toml"
	}
	return "yaml"
}

// Parse turns file bytes into a case-preserving map. Viper's own reader
// lowercases every key, label keys included (node.labels.Zone would become
// zone), so files are decoded here and viper supplies env and flags.
//
// Every format gets the same rules: nesting is bounded before a decoder
// sees the bytes, a key given twice is an error, and so is anything after
// the document. Messages never repeat the file's content: a file that is
// not a config may be a password or a token file given by mistake.
func Parse(data []byte, format string) (map[string]any, error) {
	if err := checkDepth(data); err != nil {
		return nil, err
	}
	var v any
	var err error
	switch format {
	case "toml":
		var m map[string]any
		err = toml.Unmarshal(data, &m)
		v = m
	case "json":
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err = dec.Decode(&v); err == nil {
			if dec.More() {
				return nil, fmt.Errorf("not valid JSON: data after the end of the document at byte %d; a config is one JSON object", dec.InputOffset())
			}
			// encoding/json keeps the last of two equal keys silently; the
			// YAML parser, which reads JSON too, refuses them as for YAML
			var dup any
			if derr := yaml.Unmarshal(data, &dup); derr != nil && strings.Contains(derr.Error(), "already defined") {
				return nil, fmt.Errorf("not valid JSON: %s", yamlMessage(derr))
			}
		}
	default:
		v, err = decodeYAML(data)
		if err == nil && v == nil {
			return map[string]any{}, nil
		}
	}
	if err != nil {
		msg := err.Error()
		if format == "yaml" {
			msg = yamlMessage(err)
		}
		return nil, fmt.Errorf("not valid %s: %s", strings.ToUpper(format), msg)
	}
	m, ok := normalize(v).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the file must hold a mapping of keys at the top, got %s; check that it is the appliance config", kindOf(normalize(v)))
	}
	return m, nil
}

// decodeYAML reads the one document of a file: a second one (after ---)
// would be ignored, as JSON's trailing data would.
func decodeYAML(data []byte) (any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var v any
	if err := dec.Decode(&v); err != nil && err != io.EOF {
		return nil, err
	}
	var more any
	if err := dec.Decode(&more); err != io.EOF {
		return nil, errors.New("more follows the config (a --- document); a file holds one config")
	}
	return v, nil
}

// yamlMessage keeps the parser's line and reason but not the values it
// quotes ("cannot unmarshal !!str `s3cret`").
func yamlMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if i := strings.IndexByte(msg, '`'); i >= 0 {
		msg = msg[:i] + "(value not shown)"
	}
	return clipTo(msg, 256)
}

// kindOf says what a value is without showing it.
func kindOf(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case []any:
		return "a list"
	case nil:
		return "nothing"
	}
	return "a single value"
}

// maxDepth bounds nesting: a config is three or four levels deep, and the
// decoders recurse once per level (4 MiB of "[" overflowed the stack).
const maxDepth = 32

// checkDepth counts the brackets and braces open at once outside quoted
// strings and comments, the nesting every format's flow syntax shares.
// YAML's block nesting costs a line per level and its parser bounds it.
func checkDepth(data []byte) error {
	depth, line := 0, 1
	var quote byte
	comment := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		// a quote ends at the line's end at the latest: a stray " in a
		// YAML plain scalar must not hide the brackets after it
		case c == '\n':
			line++
			comment, quote = false, 0
		case comment:
		case quote != 0:
			if c == '\\' && quote == '"' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#':
			comment = true
		case c == '[' || c == '{':
			if depth++; depth > maxDepth {
				return fmt.Errorf("nested more than %d levels deep at line %d; a config needs a few", maxDepth, line)
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return nil
}

// normalize turns every parser's maps and numbers into the few types the
// decoder knows.
func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = normalize(x)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[fmt.Sprint(k)] = normalize(x)
		}
		return m
	case []any:
		for i, x := range v {
			v[i] = normalize(x)
		}
		return v
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n
		}
		f, _ := v.Float64()
		return f
	case int:
		return int64(v)
	case uint64:
		return v
	case float32:
		return float64(v)
	}
	return v
}

// overlay sets env variables and changed flags over the file's values, and
// remembers where each came from so errors can name the variable or flag.
func overlay(raw *map[string]any, src Source) (map[string]string, error) {
	v := viper.NewWithOptions(viper.KeyDelimiter("::"))
	origins := map[string]string{}
	for _, k := range Keys() {
		vk := strings.ReplaceAll(k.Path, ".", "::")
		if err := v.BindEnv(vk, k.Env); err != nil {
			return nil, fmt.Errorf("bind %s: %w", k.Env, err)
		}
		if s, ok := os.LookupEnv(k.Env); ok && s != "" {
			origins[k.Path] = k.Env
		}
		if src.Flags == nil || k.Flag == "" {
			continue
		}
		if f := src.Flags.Lookup(k.Flag); f != nil {
			if err := v.BindPFlag(vk, f); err != nil {
				return nil, fmt.Errorf("bind --%s: %w", k.Flag, err)
			}
			if f.Changed {
				origins[k.Path] = "--" + k.Flag
			}
		}
	}
	if err := unknownEnv(); err != nil {
		return nil, err
	}
	if *raw == nil {
		*raw = map[string]any{}
	}
	for _, k := range Keys() {
		if vk := strings.ReplaceAll(k.Path, ".", "::"); v.IsSet(vk) {
			setPath(*raw, strings.Split(k.Path, "."), fromViper(v.Get(vk)))
		}
	}
	return origins, nil
}

func fromViper(v any) any {
	switch v := v.(type) {
	case []string:
		out := make([]any, len(v))
		for i, s := range v {
			out[i] = s
		}
		return out
	case int:
		return int64(v)
	}
	return v
}

func setPath(m map[string]any, path []string, v any) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// AddFlags defines the flags of every key that has one, for commands that
// take a config.
func AddFlags(fs *pflag.FlagSet) {
	for _, k := range Keys() {
		if k.Flag == "" {
			continue
		}
		help := k.Usage
		if help == "" {
			help = k.Path
		}
		help += " (config " + k.Path + ", env " + k.Env + ")"
		switch k.typ.Kind() {
		case reflect.Bool:
			fs.VarPF(new(boolFlag), k.Flag, "", help).NoOptDefVal = "true"
		default:
			fs.String(k.Flag, "", help)
		}
	}
}

// boolFlag is a bool flag under ParseBool's rule; pflag's own takes 1, t
// and T as well, which a file or a variable would be refused for.
type boolFlag bool

func (b *boolFlag) Set(s string) error {
	v, err := ParseBool(s)
	if err != nil {
		return fmt.Errorf("%w; write true or false", err)
	}
	*b = boolFlag(v)
	return nil
}

func (b *boolFlag) String() string   { return strconv.FormatBool(bool(*b)) }
func (b *boolFlag) Type() string     { return "bool" }
func (b *boolFlag) IsBoolFlag() bool { return true }

// OtherEnv are the PERCH_* variables that are not config keys: read by
// other parts of perch (the signing key's password, the cache of the test
// tiers) or set inside the pipeline's containers. Any other PERCH_*
// variable is a mistake, refused like an unknown key in a file, since a
// misspelt PERCH_NODE_TOKN would otherwise install a node without a token.
var OtherEnv = []string{
	"PERCH_BUNDLE_KEY_PASSWORD", "PERCH_CACHE", "PERCH_K3S_BIN", "PERCH_SANDBOX_CNI", "PERCH_SANDBOX_POD_SUBNET",
	"PERCH_TUI_CAPTURE_DIR", "PERCH_TEST_MARK", "PERCH_TEST_MAIN_ARGS",
	"PERCH_WORKER_SLOT", "PERCH_NATS_HOST", "PERCH_NATS_URL", "PERCH_STREAMS_FILE",
	"PERCH_MODEL",
}

// otherEnvPrefixes are families of such variables (the benchmarks' inputs).
var otherEnvPrefixes = []string{"PERCH_BENCH_"}

func unknownEnv() error {
	var known []string
	for _, k := range Keys() {
		known = append(known, k.Env)
	}
	var errs FieldErrors
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "PERCH_") || slices.Contains(known, name) || slices.Contains(OtherEnv, name) ||
			slices.ContainsFunc(otherEnvPrefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		// the value is never shown: a misspelt token variable holds a token
		errs.add(name, "is not a Perch variable%s; unset it or correct its name", suggestEnv(name, known))
	}
	if len(errs) > 0 {
		return &InvalidError{Source: "environment", Errs: errs.sorted()}
	}
	return nil
}

func suggestEnv(name string, known []string) string {
	s := suggest(name, known)
	if strings.HasPrefix(s, "; valid keys here") {
		return " (the variables are the config keys' names: node.serverURL is PERCH_NODE_SERVER_URL)"
	}
	return strings.Replace(s, " (keys are case-sensitive)", "", 1)
}
