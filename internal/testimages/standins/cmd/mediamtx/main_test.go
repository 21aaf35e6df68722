package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/perchedge/perch/internal/testimages/standins/rtsp"
)

// TestGateway runs the gateway stand-in as the chart does, with a real
// ffmpeg publishing to ingest/cam1 and cam1 pulling from there, and reads
// it back through RTSP (the gst-launch stand-in), HLS and metrics.
func TestGateway(t *testing.T) {
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install ffmpeg (scripts/test-deps)", tool)
		}
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator), ".", "../gst-launch")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build stand-ins: %v\n%s", err, out)
	}
	rtspPort, hlsPort, metricsPort := freePort(t), freePort(t), freePort(t)
	cfg := filepath.Join(t.TempDir(), "mediamtx.yml")
	writeFile(t, cfg, fmt.Sprintf(`logLevel: info
readTimeout: 10s
api: no
metrics: yes
metricsAddress: :%d
rtsp: yes
protocols: [tcp]
rtspAddress: :%d
hls: yes
hlsAddress: :%d
webrtc: yes
paths:
  "cam1":
    source: "rtsp://127.0.0.1:%d/ingest/cam1"
    sourceOnDemand: no
  all_others: {}
`, metricsPort, rtspPort, hlsPort, rtspPort))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gw := exec.Command(filepath.Join(bin, "mediamtx"), cfg)
	gwLog := &strings.Builder{}
	gw.Stdout, gw.Stderr = gwLog, gwLog
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		gw.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- gw.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway did not exit cleanly on SIGTERM: %v", err)
			}
		case <-time.After(10 * time.Second):
			gw.Process.Kill()
			t.Errorf("gateway still running 10s after SIGTERM")
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", gwLog)
		}
	}()
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	eventually(t, 10*time.Second, "metrics answer", func() bool { _, code := get(metrics); return code == 200 })

	rtspBase := fmt.Sprintf("rtsp://127.0.0.1:%d", rtspPort)
	if _, err := rtsp.Play(ctx, rtspBase+"/nothing-here", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("DESCRIBE of an unknown path: got %v, want 404", err)
	}

	ff := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "60",
		"-c:v", "libx264", "-g", "25", "-f", "rtsp", "-rtsp_transport", "tcp", rtspBase+"/ingest/cam1")
	ffLog := &strings.Builder{}
	ff.Stdout, ff.Stderr = ffLog, ffLog
	if err := ff.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ff.Process.Kill()
		ff.Wait()
		if t.Failed() {
			t.Logf("ffmpeg log:\n%s", ffLog)
		}
	}()

	eventually(t, 20*time.Second, `cam1 ready in metrics`, func() bool {
		body, _ := get(metrics)
		return strings.Contains(body, `paths{name="cam1",state="ready"} 1`)
	})
	body, _ := get(metrics)
	if m := regexp.MustCompile(`paths_bytes_received\{name="cam1",state="ready"\} (\d+)`).FindStringSubmatch(body); m == nil || m[1] == "0" {
		t.Errorf("no bytes received on cam1:\n%s", body)
	}

	hls := fmt.Sprintf("http://127.0.0.1:%d/cam1/", hlsPort)
	var playlist string
	eventually(t, 15*time.Second, "an HLS playlist with a segment", func() bool {
		var code int
		playlist, code = get(hls + "index.m3u8")
		return code == 200 && strings.Contains(playlist, ".ts")
	})
	for _, tag := range []string{"#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:", "#EXT-X-MEDIA-SEQUENCE:", "#EXTINF:"} {
		if !strings.Contains(playlist, tag) {
			t.Errorf("playlist lacks %s:\n%s", tag, playlist)
		}
	}
	var first string
	for _, l := range strings.Split(playlist, "\n") {
		if strings.HasSuffix(l, ".ts") {
			first = l
			break
		}
	}
	seg, code := get(hls + first)
	if code != 200 || len(seg) == 0 || seg[0] != 0x47 {
		t.Fatalf("segment %s: status %d, %d bytes, not MPEG-TS", first, code, len(seg))
	}
	segFile := filepath.Join(t.TempDir(), "seg.ts")
	writeFile(t, segFile, seg)
	probe, err := exec.Command("ffprobe", "-v", "error", "-show_streams", segFile).CombinedOutput()
	if err != nil || !strings.Contains(string(probe), "codec_name=h264") {
		t.Errorf("ffprobe of the segment: %v\n%s", err, probe)
	}

	// Arguments as the chart's run-cpu.sh passes them, after the shell.
	gst := exec.CommandContext(ctx, filepath.Join(bin, "gst-launch"), "-e", "rtspsrc",
		"location="+rtspBase+"/cam1", "protocols=tcp", "latency=200", "!", "decodebin", "!",
		"videoconvert", "!", "gvafpscounter", "!", "fakesink", "sync=false")
	out, err := gst.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	gstErr := &strings.Builder{}
	gst.Stderr = gstErr
	if err := gst.Start(); err != nil {
		t.Fatal(err)
	}
	fps := make(chan float64, 1)
	go func() {
		re := regexp.MustCompile(`^FpsCounter\(average [0-9.]+sec\): total=([0-9.]+) fps, number-streams=1`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				f, _ := strconv.ParseFloat(m[1], 64)
				fps <- f
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case f := <-fps:
		if f <= 0 {
			t.Errorf("gst-launch stand-in reports %.2f fps", f)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("no fps line from the gst-launch stand-in within 15s; stderr:\n%s", gstErr)
	}
	gst.Process.Signal(syscall.SIGTERM)
	if err := gst.Wait(); err != nil {
		t.Errorf("gst-launch stand-in on SIGTERM: %v\n%s", err, gstErr)
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func writeFile[T string | []byte](t *testing.T, name string, data T) {
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func get(url string) (string, int) {
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return "", 0
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b), res.StatusCode
}

func eventually(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
