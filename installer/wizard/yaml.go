package wizard

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/perchedge/perch/installer/config"
)

// header starts every file the wizard saves, so whoever finds it on the
// node knows what it is and how to use it again.
const header = `# Perch appliance config, written by the perch install wizard.
# Check it:             perch config validate FILE
# Install unattended:   perch install --config FILE
`

// MarshalYAML writes cfg in the config file's own key names and order. A key
// is left out only when both it and its default are empty, so loading the
// file gives back exactly cfg (config.LoadBytes(out) == cfg).
func MarshalYAML(cfg config.Appliance) ([]byte, error) {
	def := config.Default()
	doc := structNode(reflect.ValueOf(cfg), reflect.ValueOf(def))
	var b bytes.Buffer
	b.WriteString(header)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("write config YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("write config YAML: %w", err)
	}
	return b.Bytes(), nil
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	secretType   = reflect.TypeOf(config.Secret(""))
)

func structNode(v, def reflect.Value) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		key := t.Field(i).Tag.Get("key")
		if key == "" {
			continue
		}
		fv := v.Field(i)
		var fd reflect.Value
		if def.IsValid() {
			fd = def.Field(i)
		}
		var val *yaml.Node
		if fv.Kind() == reflect.Struct && fv.Type() != durationType {
			val = structNode(fv, fd)
			if len(val.Content) == 0 {
				continue
			}
		} else {
			if fv.IsZero() && (!fd.IsValid() || fd.IsZero()) {
				continue
			}
			val = leafNode(fv)
		}
		n.Content = append(n.Content, scalar(key), val)
	}
	return n
}

func leafNode(v reflect.Value) *yaml.Node {
	switch {
	case v.Type() == durationType:
		return scalar(shortDuration(time.Duration(v.Int())))
	case v.Type() == secretType:
		// the real value, not Secret.String()'s redaction: this is the file
		// the node installs from (saved 0600)
		return scalar(v.String())
	}
	switch v.Kind() {
	case reflect.String:
		return scalar(v.String())
	case reflect.Bool, reflect.Int:
		n := &yaml.Node{}
		if err := n.Encode(v.Interface()); err != nil {
			return scalar(fmt.Sprint(v.Interface()))
		}
		return n
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		if v.Type().Elem().Kind() != reflect.Struct {
			n.Style = yaml.FlowStyle
		}
		for i := 0; i < v.Len(); i++ {
			if e := v.Index(i); e.Kind() == reflect.Struct {
				n.Content = append(n.Content, structNode(e, reflect.Value{}))
			} else {
				n.Content = append(n.Content, leafNode(e))
			}
		}
		return n
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode}
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		slices.Sort(keys)
		for _, k := range keys {
			n.Content = append(n.Content, scalar(k), scalar(v.MapIndex(reflect.ValueOf(k)).String()))
		}
		return n
	}
	return scalar(fmt.Sprint(v.Interface()))
}

// scalar is a string node that stays a string when read back: "true",
// "5000" or "" are quoted.
func scalar(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	var back any
	if err := yaml.Unmarshal([]byte(s), &back); err != nil || back != s {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

// shortDuration writes 5m rather than Go's 5m0s, the way people write it in
// the file.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
