package registry

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/registry/auth"
	"golang.org/x/crypto/bcrypt"
)

func TestHtpasswdLine(t *testing.T) {
	pw, err := RandomPassword()
	if err != nil {
		t.Fatal(err)
	}
	line, err := HtpasswdLine("perch", pw)
	if err != nil {
		t.Fatal(err)
	}
	user, hash, ok := strings.Cut(line, ":")
	if !ok || user != "perch" || !strings.HasPrefix(hash, "$2y$") {
		t.Fatalf("line %q, want perch:$2y$...", line)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)); err != nil {
		t.Errorf("bcrypt does not accept the password: %v", err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw+"x")); err == nil {
		t.Error("bcrypt accepts a wrong password")
	}

	// Distribution's own htpasswd access controller reads the file.
	file := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(file, []byte("# perch\n"+line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkHtpasswd(file); err != nil {
		t.Fatalf("checkHtpasswd: %v", err)
	}
	ac, err := auth.GetAccessController("htpasswd", map[string]any{"realm": "test", "path": file})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/v2/", nil)
	req.SetBasicAuth("perch", pw)
	grant, err := ac.Authorized(req)
	if err != nil {
		t.Fatalf("distribution refuses the right password: %v", err)
	}
	if grant.User.Name != "perch" {
		t.Errorf("granted %q, want perch", grant.User.Name)
	}
	for _, wrong := range [][2]string{{"perch", "nope"}, {"perch", pw[:31]}, {"other", pw}} {
		req := httptest.NewRequest("GET", "/v2/", nil)
		req.SetBasicAuth(wrong[0], wrong[1])
		if _, err := ac.Authorized(req); err == nil {
			t.Errorf("distribution accepts %s:%s", wrong[0], wrong[1])
		}
	}
}

func TestHtpasswdLineRefuses(t *testing.T) {
	for _, tc := range [][2]string{{"", "pw"}, {"a:b", "pw"}, {"a\nb", "pw"}, {"a", ""}, {"a", strings.Repeat("x", 73)}} {
		if line, err := HtpasswdLine(tc[0], tc[1]); err == nil {
			t.Errorf("HtpasswdLine(%q, %q) = %q, want an error", tc[0], tc[1], line)
		}
	}
}

func TestRandomPassword(t *testing.T) {
	seen := map[string]bool{}
	urlSafe := regexp.MustCompile(`^[A-Za-z0-9_-]{32}$`)
	for range 100 {
		pw, err := RandomPassword()
		if err != nil {
			t.Fatal(err)
		}
		if !urlSafe.MatchString(pw) {
			t.Fatalf("password %q: want 32 URL-safe characters", pw)
		}
		if seen[pw] {
			t.Fatalf("password %q came twice", pw)
		}
		seen[pw] = true
	}
}

func TestCheckHtpasswd(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, content string }{
		{"empty", ""},
		{"only comments", "# nobody\n\n"},
		{"no colon", "perch\n"},
		{"md5 entry", "perch:$apr1$abc$def\n"},
		{"plain text", "perch:secret\n"},
	} {
		file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if err := os.WriteFile(file, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := checkHtpasswd(file); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if err := checkHtpasswd(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "perch install") {
		t.Errorf("missing file: %v, want an error saying how to make one", err)
	}
}
