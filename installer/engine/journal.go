package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Paths of Perch's own state on a host (under --root).
const (
	StateDir    = "/var/lib/perch"
	JournalPath = StateDir + "/journal.json"
	LockPath    = StateDir + "/install.lock"
)

// Store is the slice of the host layer the engine needs; *host.Host has it.
type Store interface {
	ReadFile(p string) ([]byte, error)
	WriteFile(p string, data []byte, mode fs.FileMode) (bool, error)
	MkdirAll(p string, mode fs.FileMode) error
	OpenLock(p string) (*os.File, error)
	Path(p string) string
}

// Journal records what an install did, so an interrupted install says where
// it stopped and uninstall knows what Perch created.
type Journal struct {
	Version int       `json:"version"`
	Status  string    `json:"status"` // running | complete | failed
	Step    string    `json:"step,omitempty"`
	Error   string    `json:"error,omitempty"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// Owned lists what Perch created, in creation order.
	Owned []Change `json:"owned"`
}

// ReadJournal returns the journal, or an empty one on a fresh host.
func ReadJournal(s Store) (*Journal, error) {
	data, err := s.ReadFile(JournalPath)
	if errors.Is(err, fs.ErrNotExist) {
		return &Journal{Version: 1}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read journal %s: %w", JournalPath, err)
	}
	var j Journal
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("journal %s is damaged (%v); move it away to start over", s.Path(JournalPath), err)
	}
	return &j, nil
}

func (j *Journal) own(cs []Change) {
	for _, c := range cs {
		if c.Action != Create || (c.Kind != File && c.Kind != Link && c.Kind != Service) {
			continue
		}
		if !slices.ContainsFunc(j.Owned, func(o Change) bool { return o.Kind == c.Kind && o.Target == c.Target }) {
			j.Owned = append(j.Owned, Change{Action: Create, Kind: c.Kind, Target: c.Target})
		}
	}
}

// Save writes the journal atomically.
func (j *Journal) Save(s Store) error {
	j.Updated = time.Now().UTC()
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	_, err = s.WriteFile(JournalPath, append(data, '\n'), 0o644)
	return err
}

// Lock is held for the whole of an install or uninstall. It is a flock, so
// the kernel releases it when perch dies, even by kill -9: a crash never
// leaves a stale lock behind.
type Lock struct{ f *os.File }

// ErrLocked means another perch is working on this host.
var ErrLocked = errors.New("another perch install is running")

// AcquireLock takes the host's install lock or says who holds it.
func AcquireLock(s Store) (*Lock, error) {
	p := s.Path(LockPath)
	f, err := s.OpenLock(LockPath)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		who := lockHolder(f)
		f.Close()
		return nil, fmt.Errorf("%w on this host (%s, lock %s); wait for it to finish or stop it first", ErrLocked, who, p)
	}
	return &Lock{f: f}, nil
}

// lockHolder finds the pid holding the flock in /proc/locks, so the lock
// file itself is never rewritten and a no-op install writes nothing.
func lockHolder(f *os.File) string {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return "pid unknown"
	}
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		return "pid unknown"
	}
	suffix := ":" + strconv.FormatUint(st.Ino, 10)
	for _, line := range strings.Split(string(locks), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 6 && fields[1] == "FLOCK" && strings.HasSuffix(fields[5], suffix) {
			return "pid " + fields[4]
		}
	}
	return "pid unknown"
}

// Release unlocks; calling it again is harmless.
func (l *Lock) Release() {
	if l != nil && l.f != nil {
		_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
		_ = l.f.Close()
		l.f = nil
	}
}
