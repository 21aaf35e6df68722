package config

import (
	"reflect"
	"strings"
	"unicode"
)

// Key is one config key as every front end sees it: file path, env variable
// and (optional) flag all come from the struct tags of Appliance, so they
// cannot drift apart.
type Key struct {
	Path  string // node.serverURL
	Env   string // PERCH_NODE_SERVER_URL
	Flag  string // server-url, or "" when the key has no flag
	Usage string
	typ   reflect.Type
}

// Keys lists every leaf key of the config. Lists, maps and lists of objects
// are leaves: an env variable sets them whole.
func Keys() []Key {
	var keys []Key
	walkKeys(reflect.TypeOf(Appliance{}), "", &keys)
	return keys
}

func walkKeys(t reflect.Type, prefix string, out *[]Key) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("key")
		if name == "" {
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			walkKeys(f.Type, path, out)
			continue
		}
		*out = append(*out, Key{
			Path:  path,
			Env:   EnvName(path),
			Flag:  f.Tag.Get("flag"),
			Usage: usage[path],
			typ:   f.Type,
		})
	}
}

// EnvName turns node.serverURL into PERCH_NODE_SERVER_URL, the way k3s turns
// its flags into K3S_* variables.
func EnvName(path string) string {
	var b strings.Builder
	b.WriteString("PERCH")
	for _, part := range strings.Split(path, ".") {
		b.WriteByte('_')
		rs := []rune(part)
		for i, r := range rs {
			if i > 0 && unicode.IsUpper(r) {
				prevLower := unicode.IsLower(rs[i-1])
				nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
				if prevLower || (unicode.IsUpper(rs[i-1]) && nextLower) {
					b.WriteByte('_')
				}
			}
			b.WriteRune(unicode.ToUpper(r))
		}
	}
	return b.String()
}

// usage is the one-line help of keys that have flags.
var usage = map[string]string{
	"node.hostname":    "node name (RFC 1123; default: this machine's hostname)",
	"node.role":        "server or agent",
	"node.clusterInit": "start a new HA cluster with embedded etcd (first server)",
	"node.serverURL":   "https://HOST:6443 of a server to join",
	"node.tokenFile":   "file holding the cluster join token",
	"node.nodeIP":      "IP address the node advertises",
	"bundle.source":    "bundle to install from: a path, a USB mount or a URL",
	"bundle.publicKey": "minisign public key that bundles must be signed with",
	"k3s.binary":       "path of the k3s binary to install",
	"gpu.mode":         "auto, required or off",
}
