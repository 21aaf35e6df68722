package registry

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// htpasswdCost is bcrypt's minimum cost. The registry checks the password
// on every request (distribution caches nothing): at the default cost of
// 10 that is ~100 ms of CPU per blob or manifest (1.5 ms at cost 4, measured
// on a 2-core box), and a node pulling a few dozen layers would keep a core
// busy. Cost only slows guessing of weak
// passwords; Perch's are 192 random bits (RandomPassword), which no cost
// factor makes any harder to guess.
const htpasswdCost = bcrypt.MinCost

// HtpasswdLine is one line of an htpasswd file (without newline) for user:
// "user:$2y$..." with a bcrypt hash, the format Apache's `htpasswd -B`
// writes and distribution's htpasswd auth reads.
func HtpasswdLine(user, password string) (string, error) {
	if user == "" || strings.ContainsAny(user, ":\r\n") {
		return "", fmt.Errorf("htpasswd user %q: must be non-empty, without ':' or line breaks", user)
	}
	if password == "" {
		return "", errors.New("htpasswd: empty password")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), htpasswdCost)
	if err != nil {
		return "", fmt.Errorf("htpasswd: %w", err)
	}
	// Go writes $2a$; $2y$ is the same algorithm under the prefix htpasswd
	// itself uses, which every reader (Go's bcrypt included) accepts.
	if bytes.HasPrefix(hash, []byte("$2a$")) {
		hash[2] = 'y'
	}
	return user + ":" + string(hash), nil
}

// RandomPassword is 32 URL-safe characters (192 bits) from crypto/rand, safe
// to put in registries.yaml and URLs unquoted.
func RandomPassword() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// checkHtpasswd fails on a file distribution would not use as meant: a
// missing one (distribution would create it with a random user and print
// the password to the log) or one with entries it cannot check (it only
// reads bcrypt).
func checkHtpasswd(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("registry htpasswd file: %w; perch install writes it, or make one with `htpasswd -cB FILE USER`", err)
	}
	users := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" || !strings.HasPrefix(hash, "$2") {
			return fmt.Errorf("registry htpasswd file %s line %d: want USER:BCRYPT-HASH (only bcrypt is supported: `htpasswd -B`)", path, n)
		}
		users++
	}
	if users == 0 {
		return fmt.Errorf("registry htpasswd file %s has no users; add one with `htpasswd -B %s USER`", path, path)
	}
	return nil
}
