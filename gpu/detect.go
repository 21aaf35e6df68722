// Package gpu holds what Perch knows about the node's NVIDIA GPUs: an
// inventory read through NVML and the node labels derived from it.
package gpu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Library is the part of NVML that Detect uses. Both nvml.New() and go-nvml's
// mocks (pkg/nvml/mock/dgxa100) satisfy it.
type Library interface {
	Init() nvml.Return
	Shutdown() nvml.Return
	SystemGetDriverVersion() (string, nvml.Return)
	SystemGetCudaDriverVersion() (int, nvml.Return)
	DeviceGetCount() (int, nvml.Return)
	DeviceGetHandleByIndex(int) (nvml.Device, nvml.Return)
}

// Open returns the host's NVML. Nothing is loaded until Init: it dlopens
// libnvidia-ml.so.1 then, and reports ERROR_LIBRARY_NOT_FOUND when the driver
// is not installed.
func Open() nvml.Interface { return nvml.New() }

// DefaultTimeout bounds Detect when its context has no deadline. A healthy
// driver answers in well under a second; a wedged one (a GPU fallen off the
// bus) can block an NVML call forever.
const DefaultTimeout = 10 * time.Second

// NoDriverReason is Inventory.Reason when libnvidia-ml.so.1 is absent.
const NoDriverReason = "no NVIDIA driver installed (libnvidia-ml.so.1 not found)"

// Inventory is what NVML reports about the host.
type Inventory struct {
	DriverVersion     string   `json:"driverVersion,omitempty"`     // e.g. 550.54.15
	CUDADriverVersion string   `json:"cudaDriverVersion,omitempty"` // highest CUDA the driver supports, e.g. 12.4
	GPUs              []Device `json:"gpus"`
	// Reason says why there are no GPUs, when there are none.
	Reason string `json:"reason,omitempty"`
}

// Device is one physical GPU.
type Device struct {
	Index        int    `json:"index"`
	Name         string `json:"name"`
	UUID         string `json:"uuid"`
	MemoryMiB    uint64 `json:"memoryMiB"` // 0 where NVML does not report it (integrated memory)
	BusID        string `json:"busID,omitempty"`
	ComputeMajor int    `json:"computeMajor"`
	ComputeMinor int    `json:"computeMinor"`
	MIGEnabled   bool   `json:"migEnabled"`
	Family       string `json:"family"`
	// MIGDevices are the GPU's MIG instances: under MIG the device plugin
	// advertises these, not the GPU.
	MIGDevices []MIGDevice `json:"migDevices,omitempty"`
}

// MIGDevice is one MIG GPU instance.
type MIGDevice struct {
	// Profile is the instance's profile as the device plugin names its
	// resource after it (nvidia.com/mig-<profile>): 1g.5gb, 3g.20gb,
	// 1g.5gb+me (media extensions).
	Profile string `json:"profile"`
}

// Error is an NVML call that failed, with what a person can do about it.
type Error struct {
	Call   string
	Return nvml.Return
	Hint   string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("nvml %s: %s", e.Call, returnName(e.Return))
	if e.Hint != "" {
		msg += ": " + e.Hint
	}
	return msg
}

// Unwrap lets errors.Is(err, nvml.ERROR_NO_PERMISSION) work.
func (e *Error) Unwrap() error { return e.Return }

// TimeoutError is an NVML call that did not return before the deadline.
type TimeoutError struct {
	Call string
	err  error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("nvml %s did not return (%v): the driver may be hung; check `dmesg` for Xid errors, then reboot", e.Call, e.err)
}

func (e *TimeoutError) Unwrap() error { return e.err }

var hints = map[nvml.Return]string{
	nvml.ERROR_DRIVER_NOT_LOADED:       "the NVIDIA kernel driver is not loaded: modprobe nvidia, or reinstall the driver",
	nvml.ERROR_NO_PERMISSION:           "no permission to the NVIDIA devices: run as root or give this user access to /dev/nvidia*",
	nvml.ERROR_LIB_RM_VERSION_MISMATCH: "driver and library versions differ: reboot after a driver upgrade",
	nvml.ERROR_GPU_IS_LOST:             "a GPU has fallen off the bus: check `dmesg` for Xid errors, then reboot",
	nvml.ERROR_INSUFFICIENT_POWER:      "a GPU's power cables are not connected properly",
	nvml.ERROR_IRQ_ISSUE:               "the NVIDIA kernel driver has an interrupt problem: check `dmesg`",
}

// returnName is the constant's name (ERROR_NO_PERMISSION). Return.Error()
// would call into the C library once it is loaded; the name is stable.
func returnName(r nvml.Return) string {
	names := map[nvml.Return]string{
		nvml.ERROR_UNINITIALIZED:           "ERROR_UNINITIALIZED",
		nvml.ERROR_INVALID_ARGUMENT:        "ERROR_INVALID_ARGUMENT",
		nvml.ERROR_NOT_SUPPORTED:           "ERROR_NOT_SUPPORTED",
		nvml.ERROR_NO_PERMISSION:           "ERROR_NO_PERMISSION",
		nvml.ERROR_NOT_FOUND:               "ERROR_NOT_FOUND",
		nvml.ERROR_DRIVER_NOT_LOADED:       "ERROR_DRIVER_NOT_LOADED",
		nvml.ERROR_TIMEOUT:                 "ERROR_TIMEOUT",
		nvml.ERROR_IRQ_ISSUE:               "ERROR_IRQ_ISSUE",
		nvml.ERROR_LIBRARY_NOT_FOUND:       "ERROR_LIBRARY_NOT_FOUND",
		nvml.ERROR_FUNCTION_NOT_FOUND:      "ERROR_FUNCTION_NOT_FOUND",
		nvml.ERROR_GPU_IS_LOST:             "ERROR_GPU_IS_LOST",
		nvml.ERROR_INSUFFICIENT_POWER:      "ERROR_INSUFFICIENT_POWER",
		nvml.ERROR_LIB_RM_VERSION_MISMATCH: "ERROR_LIB_RM_VERSION_MISMATCH",
		nvml.ERROR_UNKNOWN:                 "ERROR_UNKNOWN",
	}
	if n, ok := names[r]; ok {
		return n
	}
	return fmt.Sprintf("NVML error %d", int32(r))
}

func nvmlErr(call string, r nvml.Return) error {
	return &Error{Call: call, Return: r, Hint: hints[r]}
}

// call runs one NVML call in a goroutine and gives up at ctx's deadline, so a
// hung driver cannot hang Perch. Calls stay sequential: a timed-out call ends
// the whole detection, and nothing is called after it.
func call[T any](ctx context.Context, name string, f func() (T, nvml.Return)) (T, nvml.Return, error) {
	type result struct {
		v T
		r nvml.Return
	}
	done := make(chan result, 1) // buffered: an abandoned call can still finish
	go func() {
		v, r := f()
		done <- result{v, r}
	}()
	select {
	case res := <-done:
		return res.v, res.r, nil
	case <-ctx.Done():
		var zero T
		return zero, nvml.SUCCESS, &TimeoutError{Call: name, err: ctx.Err()}
	}
}

// Detect initialises NVML once, reads the inventory and shuts NVML down.
// A host without the NVIDIA driver is not an error: the inventory has no GPUs
// and says why. Whether that is acceptable (gpu.mode) is the caller's call.
func Detect(ctx context.Context, lib Library) (inv *Inventory, err error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}

	_, r, err := call(ctx, "Init", func() (struct{}, nvml.Return) { return struct{}{}, lib.Init() })
	if err != nil {
		return nil, err
	}
	switch r {
	case nvml.SUCCESS:
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return &Inventory{GPUs: []Device{}, Reason: NoDriverReason}, nil
	default:
		return nil, nvmlErr("Init", r)
	}
	defer func() {
		var timeout *TimeoutError
		if errors.As(err, &timeout) {
			return // Shutdown would queue behind the hung call
		}
		if _, r, serr := call(ctx, "Shutdown", func() (struct{}, nvml.Return) { return struct{}{}, lib.Shutdown() }); serr == nil && r != nvml.SUCCESS && err == nil {
			err = nvmlErr("Shutdown", r)
		}
	}()

	inv = &Inventory{GPUs: []Device{}}
	if inv.DriverVersion, r, err = call(ctx, "SystemGetDriverVersion", lib.SystemGetDriverVersion); err != nil {
		return nil, err
	} else if r != nvml.SUCCESS {
		return nil, nvmlErr("SystemGetDriverVersion", r)
	}
	cuda, r, err := call(ctx, "SystemGetCudaDriverVersion", lib.SystemGetCudaDriverVersion)
	if err != nil {
		return nil, err
	}
	if r == nvml.SUCCESS {
		inv.CUDADriverVersion = cudaVersion(cuda)
	} else if r != nvml.ERROR_NOT_SUPPORTED && r != nvml.ERROR_FUNCTION_NOT_FOUND {
		return nil, nvmlErr("SystemGetCudaDriverVersion", r)
	}

	n, r, err := call(ctx, "DeviceGetCount", lib.DeviceGetCount)
	if err != nil {
		return nil, err
	}
	if r != nvml.SUCCESS {
		return nil, nvmlErr("DeviceGetCount", r)
	}
	for i := 0; i < n; i++ {
		d, err := device(ctx, lib, i)
		if err != nil {
			return nil, err
		}
		inv.GPUs = append(inv.GPUs, d)
	}
	if n == 0 {
		inv.Reason = "the NVIDIA driver is loaded but reports no GPUs"
	}
	return inv, nil
}

func device(ctx context.Context, lib Library, i int) (Device, error) {
	out := Device{Index: i}
	h, r, err := call(ctx, "DeviceGetHandleByIndex", func() (nvml.Device, nvml.Return) { return lib.DeviceGetHandleByIndex(i) })
	if err != nil {
		return out, err
	}
	if r != nvml.SUCCESS {
		return out, nvmlErr(fmt.Sprintf("DeviceGetHandleByIndex(%d)", i), r)
	}
	// named prefixes a call with the device, so errors say which GPU.
	named := func(c string) string { return fmt.Sprintf("GPU %d %s", i, c) }

	if out.Name, r, err = call(ctx, named("GetName"), h.GetName); err != nil {
		return out, err
	} else if r != nvml.SUCCESS {
		return out, nvmlErr(named("GetName"), r)
	}
	if out.UUID, r, err = call(ctx, named("GetUUID"), h.GetUUID); err != nil {
		return out, err
	} else if r != nvml.SUCCESS {
		return out, nvmlErr(named("GetUUID"), r)
	}

	// Optional facts: NOT_SUPPORTED leaves the zero value (integrated-memory
	// GPUs report no framebuffer size, non-MIG GPUs no MIG mode).
	optional := func(c string, r nvml.Return) error {
		if r == nvml.SUCCESS || r == nvml.ERROR_NOT_SUPPORTED {
			return nil
		}
		return nvmlErr(named(c), r)
	}
	mem, r, err := call(ctx, named("GetMemoryInfo"), h.GetMemoryInfo)
	if err != nil {
		return out, err
	}
	if err := optional("GetMemoryInfo", r); err != nil {
		return out, err
	}
	out.MemoryMiB = mem.Total / (1 << 20)

	pci, r, err := call(ctx, named("GetPciInfo"), h.GetPciInfo)
	if err != nil {
		return out, err
	}
	if err := optional("GetPciInfo", r); err != nil {
		return out, err
	}
	out.BusID = busID(pci)

	type cc struct{ major, minor int }
	c, r, err := call(ctx, named("GetCudaComputeCapability"), func() (cc, nvml.Return) {
		major, minor, r := h.GetCudaComputeCapability()
		return cc{major, minor}, r
	})
	if err != nil {
		return out, err
	}
	if err := optional("GetCudaComputeCapability", r); err != nil {
		return out, err
	}
	out.ComputeMajor, out.ComputeMinor = c.major, c.minor
	out.Family = Family(c.major, c.minor)

	mig, r, err := call(ctx, named("GetMigMode"), func() (int, nvml.Return) {
		current, _, r := h.GetMigMode()
		return current, r
	})
	if err != nil {
		return out, err
	}
	if err := optional("GetMigMode", r); err != nil {
		return out, err
	}
	out.MIGEnabled = r == nvml.SUCCESS && mig == nvml.DEVICE_MIG_ENABLE
	if out.MIGEnabled {
		if out.MIGDevices, err = migDevices(ctx, h, named, mem.Total); err != nil {
			return out, err
		}
	}
	return out, nil
}

// migDevices lists the GPU instances of every profile the GPU supports.
// Each is taken as one MIG device, which is what `nvidia-smi mig -cgi ...
// -C` and mig-parted make (one compute instance filling its GPU instance);
// a GPU instance split into smaller compute instances is advertised by
// the device plugin under a c.g.gb name this does not model.
func migDevices(ctx context.Context, h nvml.Device, named func(string) string, totalBytes uint64) ([]MIGDevice, error) {
	var out []MIGDevice
	for id := 0; id < nvml.GPU_INSTANCE_PROFILE_COUNT; id++ {
		c := named(fmt.Sprintf("GetGpuInstanceProfileInfo(%d)", id))
		info, r, err := call(ctx, c, func() (nvml.GpuInstanceProfileInfo, nvml.Return) { return h.GetGpuInstanceProfileInfo(id) })
		if err != nil {
			return nil, err
		}
		if r == nvml.ERROR_NOT_SUPPORTED || r == nvml.ERROR_INVALID_ARGUMENT {
			continue // a profile this GPU does not have
		}
		if r != nvml.SUCCESS {
			return nil, nvmlErr(c, r)
		}
		c = named(fmt.Sprintf("GetGpuInstances(%d)", id))
		gis, r, err := call(ctx, c, func() ([]nvml.GpuInstance, nvml.Return) { return h.GetGpuInstances(&info) })
		if err != nil {
			return nil, err
		}
		if r != nvml.SUCCESS {
			return nil, nvmlErr(c, r)
		}
		name := migProfile(id, info, totalBytes)
		for range gis {
			out = append(out, MIGDevice{Profile: name})
		}
	}
	return out, nil
}

// migProfile names a GPU instance profile as go-nvlib does, whose names
// the device plugin's resources carry: slices, then memory in GB as the
// instance's share of the GPU rounded up to eighths of its whole GB.
func migProfile(id int, info nvml.GpuInstanceProfileInfo, totalBytes uint64) string {
	const gib = 1 << 30
	gb := uint64(0)
	if totalBytes > 0 {
		frac := float64(info.MemorySizeMB) * (1 << 20) / float64(totalBytes)
		frac = math.Ceil(frac*8) / 8
		gb = uint64(math.Round(frac * float64((totalBytes+gib-1)/gib)))
	}
	name := fmt.Sprintf("%dg.%dgb", info.SliceCount, gb)
	if id == nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV1 {
		name += "+me"
	}
	return name
}

// busID is NVML's bus id string ("00000000:3B:00.0"), lower-cased. Some
// drivers (and go-nvml's mock) leave it empty; then it stays empty rather than
// being made up from zeroed domain/bus/device numbers.
func busID(p nvml.PciInfo) string {
	s := cString(p.BusId[:])
	if s == "" {
		s = cString(p.BusIdLegacy[:])
	}
	return strings.ToLower(s)
}

func cString(b []uint8) string {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	return string(b[:n])
}

// cudaVersion turns NVML's 12040 into "12.4" (1000*major + 10*minor).
func cudaVersion(v int) string {
	return strconv.Itoa(v/1000) + "." + strconv.Itoa(v%1000/10)
}

// Family is the architecture for a compute capability, named as GPU Feature
// Discovery names it (nvidia.com/gpu.family), "undefined" where GFD has none.
func Family(major, minor int) string {
	switch major {
	case 1:
		return "tesla"
	case 2:
		return "fermi"
	case 3:
		return "kepler"
	case 5:
		return "maxwell"
	case 6:
		return "pascal"
	case 7:
		if minor < 5 {
			return "volta"
		}
		return "turing"
	case 8:
		if minor < 9 {
			return "ampere"
		}
		return "ada-lovelace"
	case 9:
		return "hopper"
	case 10, 12:
		return "blackwell"
	}
	return "undefined"
}
