package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The secrets a site holds, planted where a user would put them. Each is
// made when the test runs, so it is in no binary that install copies, and
// finding one anywhere is a leak, whatever the path that leaked it.
var (
	plantedToken   = "tok" + plantedSuffix()
	plantedRegPass = "regpass" + plantedSuffix()
	plantedKeyPass = "keypass" + plantedSuffix()
	plantedCamPass = "campass" + plantedSuffix()
	// a token of digits only is a number to YAML, TOML and JSON
	plantedDigits = fmt.Sprint(int64(1e15) + time.Now().UnixNano()%1e14)
	planted       = []string{plantedToken, plantedRegPass, plantedKeyPass, plantedCamPass, plantedDigits}
)

func plantedSuffix() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// TestNoSecretInAnyFailure runs the failure paths of every command that
// takes a secret, and asserts no planted secret reaches stdout, stderr, the
// JSON events, or a file under the root other than a 0600 one.
func TestNoSecretInAnyFailure(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, _ := fixture(t)
	good, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	passFile := write("registry.pass", plantedRegPass+"\n")
	tokenFile := write("token", plantedToken+"\n")
	camera := "rtsp://admin:" + plantedCamPass + "@10.1.2.3:554/live"
	// a well-formed config holding every secret, which fails later (no
	// k3s binary at the path it names)
	holding := write("holding.yaml", strings.ReplaceAll(string(good), "node:\n", "node:\n  token: "+plantedToken+"\n")+
		"pipeline:\n  streams:\n    - {name: door, url: \""+camera+"\"}\n")
	missingK3s := write("missing-k3s.yaml", strings.Replace(string(mustRead(t, holding)), "k3s:\n  binary: ", "k3s:\n  binary: /nonexistent", 1))
	badKey := write("bad.key", "untrusted comment: not a key\nAAAA\n")
	spec := write("spec.yaml", "name: site\nversion: 1.0.0\narch: amd64\nk3s: {source: ./none}\n")

	cases := []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"token of the wrong type", nil, []string{"config", "validate", write("type.yaml", "node:\n  token: ["+plantedToken+"]\n")}},
		{"a token of digits only", nil, []string{"config", "validate", write("digits.yaml", "node:\n  role: bogus\n  token: "+plantedDigits+"\n")}},
		{"a token of digits only, in TOML", nil, []string{"config", "validate", write("digits.toml", "[node]\nrole = 'bogus'\ntoken = "+plantedDigits+"\n")}},
		{"a token of digits only, in JSON", nil, []string{"config", "validate", write("digits.json", `{"node": {"role": "bogus", "token": `+plantedDigits+`}}`)}},
		{"token beside another mistake", nil, []string{"config", "validate", write("role.yaml", "node:\n  role: bogus\n  token: \""+plantedToken+"\"\n")}},
		{"a password file given as the config", nil, []string{"plan", "-c", passFile, "--root", filepath.Join(dir, "r1")}},
		{"a token file given as the config", nil, []string{"config", "validate", tokenFile}},
		{"a TOML password file", nil, []string{"config", "validate", write("p.toml", plantedRegPass+"\n")}},
		{"a JSON token", nil, []string{"config", "validate", write("t.json", `{"node": {"token": ["`+plantedToken+`"], "role": 3}}`)}},
		{"camera URL with a bad port", nil, []string{"config", "validate", write("cam.yaml", "pipeline:\n  streams:\n    - {name: door, url: \"rtsp://admin:"+plantedCamPass+"@10.1.2.3:99999/live\"}\n")}},
		{"camera URL that does not parse", nil, []string{"config", "validate", write("cam2.yaml", "pipeline:\n  streams:\n    - {name: door, url: \"rtsp://admin:"+plantedCamPass+"@[bad/live\"}\n")}},
		{"token in the environment beside a mistake", map[string]string{"PERCH_NODE_TOKEN": plantedToken, "PERCH_NODE_ROLE": "bogus"}, []string{"config", "validate", cfg}},
		{"token in a misspelt variable", map[string]string{"PERCH_NODE_TOKN": plantedToken}, []string{"config", "validate", cfg}},
		{"token flag beside a mistake", nil, []string{"plan", "-c", cfg, "--token", plantedToken, "--role", "bogus", "--root", filepath.Join(dir, "r2")}},
		{"install that fails, as JSON", nil, []string{"install", "-c", missingK3s, "--root", filepath.Join(dir, "r3"), "--init", "none", "--yes", "-o", "json"}},
		{"install that fails, as text", nil, []string{"install", "-c", missingK3s, "--root", filepath.Join(dir, "r4"), "--init", "none", "--yes"}},
		{"plan that fails, as JSON", nil, []string{"plan", "-c", missingK3s, "--root", filepath.Join(dir, "r5"), "--init", "none", "-o", "json"}},
		{"password in --to", nil, []string{"registry", "load", dir, "--to", "https://user:" + plantedRegPass + "@127.0.0.1:1"}},
		{"password in --to, JSON", nil, []string{"registry", "load", dir, "--to", "https://user:" + plantedRegPass + "@127.0.0.1:1", "-o", "json"}},
		{"password file for an unreachable registry", nil, []string{"registry", "load", dir, "--insecure-skip-signature", "--to", "https://127.0.0.1:1", "--username", "u", "--password-file", passFile}},
		{"key password with a bad key", map[string]string{"PERCH_BUNDLE_KEY_PASSWORD": plantedKeyPass}, []string{"bundle", "build", "--spec", spec, "--key", badKey, "--out", filepath.Join(dir, "out")}},
		{"key password, JSON", map[string]string{"PERCH_BUNDLE_KEY_PASSWORD": plantedKeyPass}, []string{"bundle", "build", "--spec", spec, "--key", badKey, "--out", filepath.Join(dir, "out2"), "-o", "json"}},
		{"bundle images for a config with secrets", nil, []string{"bundle", "images", "--spec", testChartsSpec, "--config", holding, "-o", "json"}},
		{"bundle build refused for a config with secrets", nil, []string{"bundle", "build", "--spec", testChartsSpec, "--config", holding, "--out", filepath.Join(dir, "out3")}},
		{"status with a token", nil, []string{"status", "-c", holding, "--root", filepath.Join(dir, "r6"), "-o", "json"}},
		{"uninstall with a token", nil, []string{"uninstall", "-c", holding, "--root", filepath.Join(dir, "r7"), "--init", "bogus", "--yes", "-o", "json"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			out, errOut, code := perch(t, "", c.args...)
			if code == 0 {
				t.Errorf("perch %s: exit 0, want a failure (the case tests a failure path)", strings.Join(c.args, " "))
			}
			for _, s := range planted {
				if strings.Contains(out, s) || strings.Contains(errOut, s) {
					t.Errorf("secret %q leaked:\nstdout:\n%s\nstderr:\n%s", s, out, errOut)
				}
			}
		})
	}
	// What the failed commands left on disk: the journal, logs and
	// anything else under the roots. A secret may live only in a 0600 file
	// that exists to hold it.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		body, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, _ := d.Info()
		for _, s := range planted {
			if !bytes.Contains(body, []byte(s)) {
				continue
			}
			// the journal and logs are read by whoever debugs the site
			if log := filepath.Base(p) == "journal.json" || filepath.Ext(p) == ".log"; log || info.Mode().Perm() != 0o600 {
				t.Errorf("secret %q in %s (mode %v): only a 0600 file that exists to hold it may", s, p, info.Mode().Perm())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
