package images

import (
	"fmt"
	"regexp"
	"strings"
)

// Found is one image reference in a rendered object.
type Found struct {
	Image  string
	Object string // Kind namespace/name
	Field  string // spec.template.spec.containers[app].image
}

// Collect finds every image a rendered object names: a field called image
// anywhere (containers at any depth, and custom resources such as an
// operator's Prometheus, whose spec.image no container spec shows), and
// whole references in args, command and env values (an operator's
// --prometheus-config-reloader=IMAGE). ConfigMaps and Secrets hold data,
// not fields, and are not read. namespace is where an object without one
// is created: the release's.
func Collect(doc any, namespace string) []Found {
	m, ok := doc.(map[string]any)
	if !ok {
		return nil
	}
	kind, _ := m["kind"].(string)
	if kind == "ConfigMap" || kind == "Secret" {
		return nil
	}
	obj := kind
	if md, ok := m["metadata"].(map[string]any); ok {
		ns, _ := md["namespace"].(string)
		if ns == "" {
			ns = namespace
		}
		n, _ := md["name"].(string)
		if ns != "" {
			n = ns + "/" + n
		}
		obj = strings.TrimSpace(kind + " " + n)
	}
	var out []Found
	var walk func(v any, path, key string)
	walk = func(v any, path, key string) {
		switch t := v.(type) {
		case map[string]any:
			for k, child := range t {
				walk(child, join(path, k), k)
			}
		case []any:
			for i, child := range t {
				walk(child, path+index(child, i), key)
			}
		case string:
			switch key {
			case "image":
				if t != "" && !strings.ContainsAny(t, " \t\n{}") {
					out = append(out, Found{Image: t, Object: obj, Field: path})
				}
			case "args", "command", "value":
				if ref := argImage(t); ref != "" {
					out = append(out, Found{Image: ref, Object: obj, Field: path})
				}
			}
		}
	}
	walk(doc, "", "")
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// index names a list item by its name where it has one, so a path says
// which container: containers[gateway] rather than containers[0].
func index(item any, i int) string {
	if m, ok := item.(map[string]any); ok {
		if n, ok := m["name"].(string); ok && n != "" {
			return "[" + n + "]"
		}
	}
	return fmt.Sprintf("[%d]", i)
}

// imageArg is a whole reference with its registry host, path and tag or
// digest, alone or as a flag's value: strict enough that durations, paths
// and addresses in args (15d, /etc/x.yml, :9090) never match.
var imageArg = regexp.MustCompile(`^(?:--?[A-Za-z0-9][A-Za-z0-9._-]*=)?` +
	`((?:localhost|[a-z0-9-]+(?:\.[a-z0-9-]+)+)(?::[0-9]+)?` + // registry host
	`/[a-z0-9]+(?:[._/-][a-z0-9]+)*` + // repository path
	`(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(?:@sha256:[a-f0-9]{64})?|@sha256:[a-f0-9]{64}))$`) // tag, digest or both

func argImage(s string) string {
	if m := imageArg.FindStringSubmatch(strings.TrimSpace(s)); m != nil {
		return m[1]
	}
	return ""
}
