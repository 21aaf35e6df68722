package config

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

var durationType = reflect.TypeOf(time.Duration(0))

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}

// decoder fills a struct from the generic maps that YAML, TOML, JSON, env
// variables and flags produce. It is ours rather than mapstructure's so that
// every problem is reported, each with the key's full path and what to write
// instead.
type decoder struct {
	errs    FieldErrors
	origins map[string]string // path -> "PERCH_NODE_ROLE" or "--role", for errors
}

func (d *decoder) fail(path, format string, args ...any) {
	d.errs.add(path, format, args...)
	d.errs[len(d.errs)-1].From = d.origins[path]
}

func (d *decoder) decodeStruct(path string, in any, out reflect.Value) {
	m, ok := in.(map[string]any)
	if !ok {
		d.fail(path, "must be a mapping of keys, got %s", describe(in))
		return
	}
	t := out.Type()
	fields := map[string]int{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if k := t.Field(i).Tag.Get("key"); k != "" {
			fields[k] = i
			names = append(names, k)
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sub := join(path, k)
		i, ok := fields[k]
		if !ok {
			d.fail(sub, "unknown key%s", suggest(k, names))
			continue
		}
		if m[k] == nil { // "key:" with no value keeps the default
			continue
		}
		d.decode(sub, m[k], out.Field(i))
	}
}

func (d *decoder) decode(path string, in any, out reflect.Value) {
	switch {
	case out.Type() == durationType:
		s, ok := in.(string)
		if !ok {
			d.fail(path, "must be a duration with a unit such as 90s or 5m, got %s", describe(in))
			return
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			d.fail(path, "%q is not a duration; write it with a unit such as 90s or 5m", s)
			return
		}
		out.SetInt(int64(v))
		return
	case out.Kind() == reflect.String:
		switch v := in.(type) {
		case string:
			out.SetString(v)
		case bool, int, int64, uint64, float64:
			out.SetString(fmt.Sprint(v))
		default:
			d.fail(path, "must be a string, got %s", describe(in))
		}
		return
	case out.Kind() == reflect.Bool:
		switch v := in.(type) {
		case bool:
			out.SetBool(v)
		case string:
			b, err := ParseBool(v)
			if err != nil {
				d.fail(path, "%q is not true or false; write true or false (yes, on and 1 are not booleans here)", v)
				return
			}
			out.SetBool(b)
		default:
			d.fail(path, "must be true or false, got %s", describe(in))
		}
		return
	case out.Kind() == reflect.Int:
		n, ok := toInt(in)
		if !ok {
			d.fail(path, "must be a whole number, got %s", describe(in))
			return
		}
		out.SetInt(n)
		return
	case out.Kind() == reflect.Struct:
		d.decodeStruct(path, in, out)
		return
	case out.Kind() == reflect.Slice && out.Type().Elem().Kind() == reflect.String:
		d.decodeStrings(path, in, out)
		return
	case out.Kind() == reflect.Slice && out.Type().Elem().Kind() == reflect.Struct:
		if s, ok := in.(string); ok { // from an env variable: YAML or JSON text
			var parsed any
			if err := yaml.Unmarshal([]byte(s), &parsed); err != nil {
				d.fail(path, "must be a YAML or JSON list: %v", err)
				return
			}
			in = parsed
		}
		list, ok := in.([]any)
		if !ok {
			d.fail(path, "must be a list, got %s", describe(in))
			return
		}
		sl := reflect.MakeSlice(out.Type(), len(list), len(list))
		for i, item := range list {
			d.decodeStruct(fmt.Sprintf("%s[%d]", path, i), item, sl.Index(i))
		}
		out.Set(sl)
		return
	case out.Kind() == reflect.Map:
		d.decodeStringMap(path, in, out)
		return
	}
	panic(fmt.Sprintf("config: no decoder for %s at %s", out.Type(), path))
}

func (d *decoder) decodeStrings(path string, in any, out reflect.Value) {
	var items []string
	switch v := in.(type) {
	case string: // env variables and flags: comma-separated
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
	case []string:
		items = v
	case []any:
		for i, item := range v {
			switch s := item.(type) {
			case string:
				items = append(items, s)
			case bool, int, int64, float64:
				items = append(items, fmt.Sprint(s))
			default:
				d.fail(fmt.Sprintf("%s[%d]", path, i), "must be a string, got %s", describe(item))
			}
		}
	default:
		d.fail(path, "must be a list of strings, got %s", describe(in))
		return
	}
	out.Set(reflect.ValueOf(items).Convert(out.Type()))
}

func (d *decoder) decodeStringMap(path string, in any, out reflect.Value) {
	m := map[string]string{}
	switch v := in.(type) {
	case string: // env variables: k=v,k2=v2
		for _, pair := range strings.Split(v, ",") {
			if pair = strings.TrimSpace(pair); pair == "" {
				continue
			}
			k, val, ok := strings.Cut(pair, "=")
			if !ok {
				d.fail(path, "%q is not KEY=VALUE; write pairs as a=1,b=2", pair)
				continue
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
	case map[string]any:
		for k, val := range v {
			switch s := val.(type) {
			case string:
				m[k] = s
			case bool, int, int64, float64:
				m[k] = fmt.Sprint(s)
			case nil:
				m[k] = ""
			default:
				d.fail(join(path, k), "must be a string, got %s", describe(val))
			}
		}
	default:
		d.fail(path, "must be a mapping of strings, got %s", describe(in))
		return
	}
	out.Set(reflect.ValueOf(m))
}

// ParseBool is the one rule for booleans, in files, PERCH_* variables and
// flags alike: true or false, in any case. yes, on and 1 are refused
// everywhere, rather than meaning true in one place and an error in another.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", Clip(s))
}

func toInt(in any) (int64, bool) {
	switch v := in.(type) {
	case int:
		return int64(v), true
	case int64:
		return v, true
	case uint64:
		if v > math.MaxInt32 {
			return 0, false
		}
		return int64(v), true
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > math.MaxInt32 {
			return 0, false
		}
		return int64(v), true
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
		return n, err == nil
	}
	return 0, false
}

func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "nothing"
	case string:
		return fmt.Sprintf("the string %q", Clip(v))
	case bool:
		return fmt.Sprintf("the bool %v", v)
	case int, int64, uint64, float64:
		return fmt.Sprintf("the number %v", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("a %T", v)
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// suggest names the known key closest to a mistyped one, since most unknown
// keys are a wrong case or a typo (nodeIp, severURL).
func suggest(k string, known []string) string {
	best, bestD := "", 4
	for _, c := range known {
		if strings.EqualFold(c, k) {
			return "; did you mean " + c + "? (keys are case-sensitive)"
		}
		if dist := levenshtein(strings.ToLower(k), strings.ToLower(c)); dist < bestD {
			best, bestD = c, dist
		}
	}
	if best != "" {
		return "; did you mean " + best + "?"
	}
	return "; valid keys here: " + strings.Join(known, ", ")
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
