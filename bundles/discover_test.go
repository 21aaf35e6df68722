package bundles

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var discoverT0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// fakeMediaFile writes size bytes at ROOT/rel, modified hours after discoverT0.
func fakeMediaFile(t *testing.T, root, rel string, size int, hours int) {
	t.Helper()
	fakeMediaText(t, root, rel, strings.Repeat("x", size))
	p, mt := filepath.Join(root, rel), discoverT0.Add(time.Duration(hours)*time.Hour)
	if err := os.Chtimes(p, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func fakeMediaText(t *testing.T, root, rel, text string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fakeMediaLink(t *testing.T, root, target, rel string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// fakeMediaSite is a machine with a USB stick (sdb, removable=1, mounted twice
// and at a path with a space), a USB SSD that says removable=0 (sdc), an
// internal data disk on /mnt (sda) with a second stick partition mounted
// inside it, a bundle copied onto /media's own disk, and a disk outside the
// media dirs.
func fakeMediaSite(t *testing.T) string {
	root := t.TempDir()
	fakeMediaText(t, root, "proc/self/mounts", `/dev/sda2 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev 0 0
/dev/sdb1 /media/PERCH\040STICK vfat rw,nosuid,nodev 0 0
/dev/sda3 /mnt/data ext4 rw,relatime 0 0
/dev/sdb2 /mnt/data/stick2 vfat rw 0 0
/dev/sdc1 /run/media/alice/SSD exfat rw,nosuid,nodev 0 0
/dev/sdb1 /media/PERCH\040STICK vfat rw,nosuid,nodev 0 0
/dev/sdd1 /srv/other ext4 rw 0 0
`)

	fakeMediaText(t, root, "sys/block/sda/removable", "0\n")
	fakeMediaText(t, root, "sys/block/sda/sda3/partition", "1\n")
	fakeMediaText(t, root, "sys/block/sdb/removable", "1\n")
	fakeMediaText(t, root, "sys/block/sdb/sdb1/partition", "1\n")
	fakeMediaText(t, root, "sys/block/sdb/sdb2/partition", "1\n")
	usb := "devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdc"
	fakeMediaText(t, root, "sys/"+usb+"/removable", "0\n")
	fakeMediaText(t, root, "sys/"+usb+"/sdc1/partition", "1\n")
	fakeMediaLink(t, root, "../"+usb, "sys/block/sdc")

	stick := "media/PERCH STICK/"
	fakeMediaFile(t, root, stick+"site-a.tar.zst", 5, 3)
	fakeMediaFile(t, root, stick+"._site-a.tar.zst", 4, 9) // macOS resource fork
	fakeMediaFile(t, root, stick+"site-c.tar.gz", 3, 9)    // decoy
	fakeMediaFile(t, root, stick+".tar.zst", 3, 9)         // no name
	fakeMediaFile(t, root, stick+"bundles/site-b.tar.zst.001", 4, 1)
	fakeMediaFile(t, root, stick+"bundles/site-b.tar.zst.002", 4, 1)
	fakeMediaFile(t, root, stick+"bundles/site-b.tar.zst.003", 2, 4) // newest part dates it
	fakeMediaFile(t, root, stick+"bundles/site-b.tar.zst.005", 7, 1) // not consecutive
	fakeMediaFile(t, root, stick+"bundles/orphan.tar.zst.002", 7, 9)
	fakeMediaFile(t, root, stick+".Trash-1000/files/old.tar.zst", 9, 9)
	fakeMediaFile(t, root, stick+"a/b/too-deep.tar.zst", 9, 9)
	fakeMediaLink(t, root, "site-a.tar.zst", stick+"link.tar.zst")
	fakeMediaLink(t, root, "bundles", stick+"linkdir")
	fakeMediaFile(t, root, stick+"locked/x", 1, 0)
	os.Chmod(filepath.Join(root, stick, "locked"), 0)
	t.Cleanup(func() { os.Chmod(filepath.Join(root, stick, "locked"), 0o755) })

	ssd := "run/media/alice/SSD/"
	fakeMediaFile(t, root, ssd+"perch-2025/perch-bundle.json", 10, 2)
	fakeMediaFile(t, root, ssd+"perch-2025/perch-bundle.json.minisig", 20, 2)
	fakeMediaFile(t, root, ssd+"perch-2025/images/k3s.tar.zst", 100, 2) // inside a bundle: not its own
	fakeMediaFile(t, root, ssd+"perch-2025/files/.keep", 1, 2)
	fakeMediaLink(t, root, "../../../../../../proc/self/mounts", ssd+"perch-2025/files/outside")

	fakeMediaFile(t, root, "mnt/data/old.tar.zst", 8, 0)
	fakeMediaFile(t, root, "mnt/data/archive/new.tar.zst", 6, 0)
	fakeMediaFile(t, root, "mnt/data/stick2/x.tar.zst", 1, 1)

	fakeMediaFile(t, root, "media/copied/perch-bundle.json", 3, 5)
	fakeMediaFile(t, root, "media/copied/k3s/k3s", 30, 5)
	fakeMediaFile(t, root, "media/.hidden/perch-bundle.json", 3, 9)
	fakeMediaFile(t, root, "srv/other/elsewhere.tar.zst", 3, 9)
	return root
}

func TestDiscover(t *testing.T) {
	root := fakeMediaSite(t)
	for _, tc := range []struct {
		name     string
		maxDepth int
		want     []string
	}{
		{"default depth", 0, []string{
			"media/PERCH STICK/bundles/site-b.tar.zst.001 split media/PERCH STICK /dev/sdb1 removable 10 4h",
			"media/PERCH STICK/site-a.tar.zst archive media/PERCH STICK /dev/sdb1 removable 5 3h",
			"run/media/alice/SSD/perch-2025 dir run/media/alice/SSD /dev/sdc1 removable 131 2h",
			"mnt/data/stick2/x.tar.zst archive mnt/data/stick2 /dev/sdb2 removable 1 1h",
			"media/copied dir media/copied - fixed 33 5h",
			"mnt/data/archive/new.tar.zst archive mnt/data /dev/sda3 fixed 6 0h",
			"mnt/data/old.tar.zst archive mnt/data /dev/sda3 fixed 8 0h",
		}},
		{"three levels", 3, []string{
			"media/PERCH STICK/a/b/too-deep.tar.zst archive media/PERCH STICK /dev/sdb1 removable 9 9h",
			"media/PERCH STICK/bundles/site-b.tar.zst.001 split media/PERCH STICK /dev/sdb1 removable 10 4h",
			"media/PERCH STICK/site-a.tar.zst archive media/PERCH STICK /dev/sdb1 removable 5 3h",
			"run/media/alice/SSD/perch-2025 dir run/media/alice/SSD /dev/sdc1 removable 131 2h",
			"mnt/data/stick2/x.tar.zst archive mnt/data/stick2 /dev/sdb2 removable 1 1h",
			"media/copied dir media/copied - fixed 33 5h",
			"mnt/data/archive/new.tar.zst archive mnt/data /dev/sda3 fixed 6 0h",
			"mnt/data/old.tar.zst archive mnt/data /dev/sda3 fixed 8 0h",
		}},
		{"one level", 1, []string{
			"media/PERCH STICK/site-a.tar.zst archive media/PERCH STICK /dev/sdb1 removable 5 3h",
			"run/media/alice/SSD/perch-2025 dir run/media/alice/SSD /dev/sdc1 removable 131 2h",
			"mnt/data/stick2/x.tar.zst archive mnt/data/stick2 /dev/sdb2 removable 1 1h",
			"media/copied dir media/copied - fixed 33 5h",
			"mnt/data/old.tar.zst archive mnt/data /dev/sda3 fixed 8 0h",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			found, err := Discover(DiscoverOptions{Root: root, MaxDepth: tc.maxDepth})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range found {
				got = append(got, describeFound(t, root, f))
			}
			if g, w := strings.Join(got, "\n"), strings.Join(tc.want, "\n"); g != w {
				t.Errorf("got\n%s\nwant\n%s", g, w)
			}
		})
	}
}

func describeFound(t *testing.T, root string, f Found) string {
	rel := func(p string) string {
		r, err := filepath.Rel(root, p)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	dev, rem := f.Device, "fixed"
	if dev == "" {
		dev = "-"
	}
	if f.Removable {
		rem = "removable"
	}
	return fmt.Sprintf("%s %s %s %s %s %d %.0fh", rel(f.Path), f.Form, rel(f.Mount), dev, rem, f.Size, f.ModTime.Sub(discoverT0).Hours())
}

func TestDiscoverNothingThere(t *testing.T) {
	found, err := Discover(DiscoverOptions{Root: t.TempDir()})
	if err != nil || len(found) != 0 {
		t.Errorf("empty root: got %v, %v; want nothing and no error", found, err)
	}
}

func TestDiscoverNothingReadable(t *testing.T) {
	root := t.TempDir()
	fakeMediaFile(t, root, "media", 1, 0) // a file where a directory should be
	if _, err := Discover(DiscoverOptions{Root: root}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("got %v, want a not-a-directory error", err)
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/media/PERCH\040STICK`:    "/media/PERCH STICK",
		`/mnt/tab\011and\134slash`: "/mnt/tab\tand\\slash",
		`/mnt/short\04`:            `/mnt/short\04`,
		`/mnt/not\089`:             `/mnt/not\089`,
		`/mnt/plain`:               "/mnt/plain",
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
