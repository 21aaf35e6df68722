package gpu

import (
	"io/fs"
	"path"
)

// RuntimeDirs are where k3s looks for nvidia-container-runtime when it
// starts: the service PATH and the GPU Operator's toolkit directory.
var RuntimeDirs = []string{"/usr/local/nvidia/toolkit", "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// FindRuntime is the nvidia-container-runtime k3s would find when it
// starts, or "". stat reads the node's filesystem (the host layer's, so
// that --root is honoured).
func FindRuntime(stat func(string) (fs.FileInfo, error)) string {
	for _, d := range RuntimeDirs {
		p := path.Join(d, "nvidia-container-runtime")
		if fi, err := stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}
