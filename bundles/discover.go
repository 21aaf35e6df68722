package bundles

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Found is a bundle found on removable or mounted media. Path and Mount
// include DiscoverOptions.Root, so Path can be opened as it is.
type Found struct {
	Path      string // the bundle: a directory holding perch-bundle.json, a NAME.tar.zst archive, or the first part NAME.tar.zst.001 of a split archive
	Form      string // "dir", "archive" or "split"
	Mount     string // the mount point it was found under
	Device    string // e.g. /dev/sdb1, "" if unknown
	Removable bool   // the device's /sys/block/<disk>/removable is 1, or the disk sits on a USB bus
	Size      int64  // bytes on disk (sum of parts for split; for a dir: sum of regular files, walked without following symlinks)
	ModTime   time.Time
}

// DiscoverOptions lets tests stand in a fake /proc, /sys and media tree
// (Root; "" or "/" is the real system) and bounds the walk (MaxDepth levels
// below each mount point, 2 when unset) so a large disk is not crawled.
type DiscoverOptions struct {
	Root     string
	MaxDepth int
}

// Where sticks end up: udisks mounts under /media and /run/media/USER,
// people mount by hand under /mnt.
var mediaDirs = []string{"/media", "/run/media", "/mnt"}

// Discover lists the bundles on mounted media, removable first, then newest.
// It reads what it can and skips the rest: a half-broken stick must not hide
// a good one. It fails only when nothing at all could be read.
func Discover(opts DiscoverOptions) ([]Found, error) {
	d := &discovery{root: opts.Root, depth: opts.MaxDepth, mounts: map[string]string{}, points: map[string]bool{}, seen: map[string]bool{}}
	if d.root == "" {
		d.root = "/"
	}
	if d.depth <= 0 {
		d.depth = 2
	}
	d.readMounts()
	var points []string
	for p := range d.mounts {
		points = append(points, p)
		d.points[d.path(p)] = true
	}
	sort.Strings(points)
	for _, p := range points {
		d.walk(d.path(p), 0, Found{Mount: d.path(p), Device: d.mounts[p], Removable: d.removable(d.mounts[p])})
	}
	// A bundle copied onto the media dirs' own disk has no mount of its own.
	for _, base := range []string{"/media", "/run/media/*", "/mnt"} {
		parents, _ := filepath.Glob(d.path(base))
		for _, parent := range parents {
			entries, err := os.ReadDir(parent)
			d.note(err)
			d.read = d.read || err == nil
			for _, e := range entries {
				p := filepath.Join(parent, e.Name())
				if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && !d.underMount(p) {
					d.walk(p, 0, Found{Mount: p})
				}
			}
		}
	}
	if !d.read && d.err != nil {
		return nil, fmt.Errorf("discover bundles: %w; check that the media is mounted and readable", d.err)
	}
	sort.Slice(d.found, func(i, j int) bool {
		a, b := d.found[i], d.found[j]
		if a.Removable != b.Removable {
			return a.Removable
		}
		if !a.ModTime.Equal(b.ModTime) {
			return a.ModTime.After(b.ModTime)
		}
		return a.Path < b.Path
	})
	return d.found, nil
}

type discovery struct {
	root   string
	depth  int
	mounts map[string]string // mount point (without root) → source device
	points map[string]bool   // the same mount points, with root
	seen   map[string]bool
	found  []Found
	read   bool  // some directory could be listed
	err    error // the first failure that was not a missing path
}

func (d *discovery) path(p string) string { return filepath.Join(d.root, p) }

func (d *discovery) note(err error) {
	if err != nil && !errors.Is(err, fs.ErrNotExist) && d.err == nil {
		d.err = err
	}
}

// readMounts keeps the last entry for a mount point: that one is visible.
func (d *discovery) readMounts() {
	b, err := os.ReadFile(d.path("/proc/self/mounts"))
	d.note(err)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		point := filepath.Clean(unescapeMount(f[1]))
		for _, m := range mediaDirs {
			if point == m || strings.HasPrefix(point, m+"/") {
				d.mounts[point] = ""
				if strings.HasPrefix(f[0], "/dev/") {
					d.mounts[point] = unescapeMount(f[0])
				}
			}
		}
	}
}

// unescapeMount undoes the kernel's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (d *discovery) underMount(p string) bool {
	for m := range d.points {
		if p == m || strings.HasPrefix(p, m+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// removable reads sysfs; anything missing there means "not removable", since
// discovery must work in containers and on odd kernels too.
func (d *discovery) removable(device string) bool {
	name := filepath.Base(device)
	if device == "" || name == "." || name == "/" {
		return false
	}
	block, disk := d.path("/sys/block"), name
	if _, err := os.Stat(filepath.Join(block, name)); err != nil {
		disk = ""
		disks, _ := os.ReadDir(block)
		for _, e := range disks {
			if _, err := os.Stat(filepath.Join(block, e.Name(), name)); err == nil {
				disk = e.Name()
				break
			}
		}
		if disk == "" {
			return false
		}
	}
	b, _ := os.ReadFile(filepath.Join(block, disk, "removable"))
	if strings.TrimSpace(string(b)) == "1" {
		return true
	}
	// USB disks and card readers often say removable=0; their sysfs path tells.
	link, _ := os.Readlink(filepath.Join(block, disk))
	return strings.Contains(link, "/usb")
}

func (d *discovery) walk(dir string, level int, at Found) {
	if level > 0 && d.points[dir] {
		return // another mount: it is walked as itself, with its own device
	}
	if fi, err := os.Lstat(filepath.Join(dir, ManifestName)); err == nil && fi.Mode().IsRegular() {
		d.add(at, dir, "dir", d.dirSize(dir), fi.ModTime())
		return
	}
	if level >= d.depth {
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		d.note(err)
		return
	}
	d.read = true
	for _, e := range entries {
		name, p := e.Name(), filepath.Join(dir, e.Name())
		switch {
		case strings.HasPrefix(name, "."): // also macOS's ._NAME.tar.zst on FAT sticks
		case e.IsDir():
			d.walk(p, level+1, at)
		case !e.Type().IsRegular(): // a symlink could lead off the stick or loop
		case strings.HasSuffix(name, ".tar.zst.001") && len(name) > len(".tar.zst.001"):
			var size int64
			var mod time.Time
			stem := strings.TrimSuffix(p, "001")
			for i := 1; ; i++ {
				fi, err := os.Lstat(fmt.Sprintf("%s%03d", stem, i))
				if err != nil || !fi.Mode().IsRegular() {
					break
				}
				size += fi.Size()
				if fi.ModTime().After(mod) {
					mod = fi.ModTime()
				}
			}
			d.add(at, p, "split", size, mod)
		case strings.HasSuffix(name, ".tar.zst") && len(name) > len(".tar.zst"):
			if fi, err := e.Info(); err == nil {
				d.add(at, p, "archive", fi.Size(), fi.ModTime())
			}
		}
	}
}

func (d *discovery) add(at Found, p, form string, size int64, mod time.Time) {
	if d.seen[p] {
		return
	}
	d.seen[p] = true
	at.Path, at.Form, at.Size, at.ModTime = p, form, size, mod
	d.found = append(d.found, at)
}

func (d *discovery) dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil // an unreadable corner makes the size a floor, not a failure
	})
	return n
}
