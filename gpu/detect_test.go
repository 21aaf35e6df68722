package gpu

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
)

func dev(s *dgxa100.Server, i int) *dgxa100.Device { return s.Devices[i].(*dgxa100.Device) }

func TestDetectDGXA100(t *testing.T) {
	s := dgxa100.New()
	inits, shutdowns := 0, 0
	s.InitFunc = func() nvml.Return { inits++; return nvml.SUCCESS }
	s.ShutdownFunc = func() nvml.Return { shutdowns++; return nvml.SUCCESS }

	inv, err := Detect(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if inits != 1 || shutdowns != 1 {
		t.Errorf("Init called %d times, Shutdown %d; want 1 and 1", inits, shutdowns)
	}
	if inv.DriverVersion != "550.54.15" || inv.CUDADriverVersion != "12.4" || inv.Reason != "" {
		t.Errorf("driver %q cuda %q reason %q; want 550.54.15, 12.4, no reason", inv.DriverVersion, inv.CUDADriverVersion, inv.Reason)
	}
	if len(inv.GPUs) != 8 {
		t.Fatalf("got %d GPUs, want 8", len(inv.GPUs))
	}
	uuids := map[string]bool{}
	for i, g := range inv.GPUs {
		want := Device{Index: i, Name: "Mock NVIDIA A100-SXM4-40GB", UUID: dev(s, i).UUID, MemoryMiB: 40960,
			ComputeMajor: 8, ComputeMinor: 0, Family: "ampere"}
		if !reflect.DeepEqual(g, want) {
			t.Errorf("GPU %d = %+v\nwant %+v", i, g, want)
		}
		if !strings.HasPrefix(g.UUID, "GPU-") || uuids[g.UUID] {
			t.Errorf("GPU %d UUID %q: want a distinct GPU-… id", i, g.UUID)
		}
		uuids[g.UUID] = true
	}

	want := map[string]string{
		"nvidia.com/gpu.present":                  "true",
		"nvidia.com/gpu.product":                  "Mock-NVIDIA-A100-SXM4-40GB",
		"nvidia.com/gpu.count":                    "8",
		"nvidia.com/gpu.memory":                   "40960",
		"nvidia.com/gpu.family":                   "ampere",
		"nvidia.com/gpu.compute.major":            "8",
		"nvidia.com/gpu.compute.minor":            "0",
		"nvidia.com/cuda.driver-version.major":    "550",
		"nvidia.com/cuda.driver-version.minor":    "54",
		"nvidia.com/cuda.driver-version.revision": "15",
		"nvidia.com/cuda.driver-version.full":     "550.54.15",
		"nvidia.com/cuda.runtime-version.major":   "12",
		"nvidia.com/cuda.runtime-version.minor":   "4",
		"nvidia.com/cuda.runtime-version.full":    "12.4",
		"perch.dev/gpu.mig":                       "false",
		"perch.dev/gpu.mixed":                     "false",
		"perch.dev/gpu.whole":                     "8",
		"perch.dev/gpu.mig-gpus":                  "0",
	}
	got := Labels(inv)
	if !maps.Equal(got, want) {
		t.Errorf("Labels =\n%v\nwant\n%v", got, want)
	}
	checkLabels(t, got)
}

// checkLabels holds every key to a known prefix and every value to
// Kubernetes' rules for label values.
func checkLabels(t *testing.T, l map[string]string) {
	t.Helper()
	for k, v := range l {
		known := false
		for _, p := range LabelPrefixes {
			known = known || strings.HasPrefix(k, p)
		}
		if !known {
			t.Errorf("label %s is under none of %v", k, LabelPrefixes)
		}
		if v == "" || len(v) > 63 || labelValue(v) != v {
			t.Errorf("label %s=%q is not a valid label value", k, v)
		}
	}
}

func TestDetectErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(*dgxa100.Server)
		want   nvml.Return
		hint   string
	}{
		{"driver not loaded", func(s *dgxa100.Server) {
			s.InitFunc = func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }
		}, nvml.ERROR_DRIVER_NOT_LOADED, "modprobe nvidia"},
		{"no permission", func(s *dgxa100.Server) {
			s.InitFunc = func() nvml.Return { return nvml.ERROR_NO_PERMISSION }
		}, nvml.ERROR_NO_PERMISSION, "run as root"},
		{"version mismatch", func(s *dgxa100.Server) {
			s.InitFunc = func() nvml.Return { return nvml.ERROR_LIB_RM_VERSION_MISMATCH }
		}, nvml.ERROR_LIB_RM_VERSION_MISMATCH, "reboot after a driver upgrade"},
		{"permission on one device", func(s *dgxa100.Server) {
			dev(s, 3).GetUUIDFunc = func() (string, nvml.Return) { return "", nvml.ERROR_NO_PERMISSION }
		}, nvml.ERROR_NO_PERMISSION, "GPU 3 GetUUID"},
		{"gpu lost", func(s *dgxa100.Server) {
			dev(s, 5).GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) { return nvml.Memory{}, nvml.ERROR_GPU_IS_LOST }
		}, nvml.ERROR_GPU_IS_LOST, "Xid"},
		{"count fails", func(s *dgxa100.Server) {
			s.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
		}, nvml.ERROR_UNKNOWN, "DeviceGetCount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := dgxa100.New()
			tc.break_(s)
			inv, err := Detect(context.Background(), s)
			if err == nil {
				t.Fatalf("no error; inventory %+v", inv)
			}
			var nerr *Error
			if !errors.As(err, &nerr) || !errors.Is(err, tc.want) {
				t.Fatalf("err = %v (%T); want an *Error wrapping %v", err, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.hint) {
				t.Errorf("err = %q; want it to mention %q", err, tc.hint)
			}
		})
	}
}

func TestDetectNoDriver(t *testing.T) {
	s := dgxa100.New()
	s.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
	s.ShutdownFunc = func() nvml.Return { t.Error("Shutdown after a failed Init"); return nvml.SUCCESS }
	inv, err := Detect(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.GPUs) != 0 || inv.GPUs == nil || inv.Reason != NoDriverReason {
		t.Errorf("inventory %+v; want zero GPUs (non-nil, for JSON []) and reason %q", inv, NoDriverReason)
	}
	if l := Labels(inv); len(l) != 0 {
		t.Errorf("labels %v; want none", l)
	}
}

func TestDetectNoDevices(t *testing.T) {
	s := dgxa100.New()
	s.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.SUCCESS }
	inv, err := Detect(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.GPUs) != 0 || inv.Reason == "" || inv.DriverVersion == "" {
		t.Errorf("inventory %+v; want the driver version, zero GPUs and a reason", inv)
	}
}

func TestDetectMixed(t *testing.T) {
	s := dgxa100.New()
	s.DeviceGetCountFunc = func() (int, nvml.Return) { return 2, nvml.SUCCESS }
	l4 := dev(s, 1)
	l4.Name = "NVIDIA L4"
	l4.CudaComputeCapability = dgxa100.CudaComputeCapability{Major: 8, Minor: 9}
	l4.MemoryInfo = nvml.Memory{Total: 23034 << 20}
	l4.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
		var p nvml.PciInfo
		copy(p.BusId[:], "00000000:3B:00.0")
		return p, nvml.SUCCESS
	}

	inv, err := Detect(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	g := inv.GPUs[1]
	if g.Name != "NVIDIA L4" || g.Family != "ada-lovelace" || g.MemoryMiB != 23034 || g.BusID != "00000000:3b:00.0" {
		t.Errorf("GPU 1 = %+v", g)
	}
	if inv.GPUs[0].BusID != "" {
		t.Errorf("GPU 0 bus id %q from an empty PciInfo; want empty", inv.GPUs[0].BusID)
	}
	l := Labels(inv)
	for k, want := range map[string]string{
		LabelCount:   "2",
		LabelProduct: "Mock-NVIDIA-A100-SXM4-40GB", // GPU 0, as GFD
		LabelFamily:  "ampere",
		LabelMemory:  "23034", // the smallest
		LabelMixed:   "true",
	} {
		if l[k] != want {
			t.Errorf("%s=%q, want %q", k, l[k], want)
		}
	}
	checkLabels(t, l)
}

func TestDetectMIG(t *testing.T) {
	s := dgxa100.New()
	if ret, _ := dev(s, 2).SetMigMode(nvml.DEVICE_MIG_ENABLE); ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	// A GPU without MIG answers NOT_SUPPORTED: not an error, just no MIG.
	dev(s, 4).GetMigModeFunc = func() (int, int, nvml.Return) { return 0, 0, nvml.ERROR_NOT_SUPPORTED }

	inv, err := Detect(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range inv.GPUs {
		if g.MIGEnabled != (i == 2) {
			t.Errorf("GPU %d MIGEnabled = %v", i, g.MIGEnabled)
		}
	}
	if l := Labels(inv); l[LabelMIG] != "true" {
		t.Errorf("%s=%q, want true", LabelMIG, l[LabelMIG])
	}
}

func TestDetectUnsupportedFacts(t *testing.T) {
	// An integrated-memory GPU (GB10) reports no memory size.
	s := dgxa100.New()
	s.DeviceGetCountFunc = func() (int, nvml.Return) { return 1, nvml.SUCCESS }
	dev(s, 0).GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) { return nvml.Memory{}, nvml.ERROR_NOT_SUPPORTED }
	s.SystemGetCudaDriverVersionFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	inv, err := Detect(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	l := Labels(inv)
	if _, ok := l[LabelMemory]; ok || inv.GPUs[0].MemoryMiB != 0 {
		t.Errorf("memory %d, label %q; want 0 and no label", inv.GPUs[0].MemoryMiB, l[LabelMemory])
	}
	if _, ok := l[LabelCUDAMajor]; ok {
		t.Errorf("CUDA label without a CUDA version: %v", l)
	}
}

func TestDetectTimeout(t *testing.T) {
	s := dgxa100.New()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	dev(s, 6).GetNameFunc = func() (string, nvml.Return) { <-release; return "", nvml.SUCCESS }
	s.ShutdownFunc = func() nvml.Return { t.Error("Shutdown behind a hung call"); return nvml.SUCCESS }

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Detect(ctx, s)
	var terr *TimeoutError
	if !errors.As(err, &terr) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v; want a TimeoutError", err)
	}
	if terr.Call != "GPU 6 GetName" || !strings.Contains(err.Error(), "GPU 6 GetName") {
		t.Errorf("err = %q; want it to name GPU 6 GetName", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Detect took %v past a 100ms deadline", d)
	}
}

func TestCUDAVersionAndFamily(t *testing.T) {
	for v, want := range map[int]string{12040: "12.4", 11080: "11.8", 13000: "13.0", 12090: "12.9"} {
		if got := cudaVersion(v); got != want {
			t.Errorf("cudaVersion(%d) = %q, want %q", v, got, want)
		}
	}
	for cc, want := range map[[2]int]string{
		{6, 1}: "pascal", {7, 0}: "volta", {7, 5}: "turing", {8, 0}: "ampere", {8, 6}: "ampere",
		{8, 7}: "ampere", {8, 9}: "ada-lovelace", {9, 0}: "hopper", {10, 0}: "blackwell",
		{12, 0}: "blackwell", {12, 1}: "blackwell", {4, 0}: "undefined",
	} {
		if got := Family(cc[0], cc[1]); got != want {
			t.Errorf("Family(%d.%d) = %q, want %q", cc[0], cc[1], got, want)
		}
	}
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"NVIDIA-GeForce-RTX-4090":      "NVIDIA-GeForce-RTX-4090",
		"Quadro-RTX-A6000-(48GB)":      "Quadro-RTX-A6000-48GB",
		"-NVIDIA_H100_":                "NVIDIA_H100",
		strings.Repeat("a", 70):        strings.Repeat("a", 63),
		strings.Repeat("a", 62) + "-b": strings.Repeat("a", 62),
		"07":                           "07",
	} {
		if got := labelValue(in); got != want {
			t.Errorf("labelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// The device plugin advertises MIG instances, not GPUs, under MIG: the
// inventory names each GPU instance by the profile the plugin names its
// resource after (nvidia.com/mig-1g.5gb).
func TestDetectMIGDevices(t *testing.T) {
	s := dgxa100.New()
	d := dev(s, 0)
	d.MigMode = nvml.DEVICE_MIG_ENABLE
	for _, id := range []int{nvml.GPU_INSTANCE_PROFILE_1_SLICE, nvml.GPU_INSTANCE_PROFILE_1_SLICE, nvml.GPU_INSTANCE_PROFILE_3_SLICE} {
		info, r := d.GetGpuInstanceProfileInfo(id)
		if r != nvml.SUCCESS {
			t.Fatal(r)
		}
		if _, r := d.CreateGpuInstance(&info); r != nvml.SUCCESS {
			t.Fatal(r)
		}
	}
	dev(s, 1).MigMode = nvml.DEVICE_MIG_ENABLE // MIG on, no instance yet
	inv, err := Detect(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range inv.GPUs[0].MIGDevices {
		got = append(got, m.Profile)
	}
	slices.Sort(got)
	if want := []string{"1g.5gb", "1g.5gb", "3g.20gb"}; !slices.Equal(got, want) {
		t.Errorf("GPU 0 MIG devices %v, want %v", got, want)
	}
	if !inv.GPUs[1].MIGEnabled || len(inv.GPUs[1].MIGDevices) != 0 || len(inv.GPUs[2].MIGDevices) != 0 {
		t.Errorf("GPU 1 (MIG, no instances) %+v, GPU 2 (no MIG) %+v: want no MIG devices", inv.GPUs[1], inv.GPUs[2])
	}
	// a GPU without MIG devices keeps its JSON as before
	b, err := json.Marshal(inv.GPUs[2])
	if err != nil || strings.Contains(string(b), "migDevices") {
		t.Errorf("JSON of a GPU without MIG devices: %s (%v)", b, err)
	}
}
