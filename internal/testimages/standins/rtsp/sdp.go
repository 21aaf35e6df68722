package rtsp

import (
	"encoding/base64"
	"strings"
)

// Media is one m= section of an SDP.
type Media struct {
	Type    string // video, audio, application
	Codec   string // upper case, as in rtpmap: H264
	Control string
	Fmtp    string
	lines   []string
}

// SDP keeps the session lines and the media sections of a description,
// enough to relay a stream under new control URLs.
type SDP struct {
	session []string
	Medias  []Media
}

// ParseSDP splits a description into its session and media sections.
func ParseSDP(body []byte) *SDP {
	s := &SDP{}
	for _, l := range strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(l, "m="); ok {
			typ, _, _ := strings.Cut(rest, " ")
			s.Medias = append(s.Medias, Media{Type: typ})
		}
		if len(s.Medias) == 0 {
			s.session = append(s.session, l)
			continue
		}
		m := &s.Medias[len(s.Medias)-1]
		m.lines = append(m.lines, l)
		switch {
		case strings.HasPrefix(l, "a=control:"):
			m.Control = strings.TrimPrefix(l, "a=control:")
		case strings.HasPrefix(l, "a=rtpmap:"):
			_, enc, _ := strings.Cut(l, " ")
			name, _, _ := strings.Cut(enc, "/")
			m.Codec = strings.ToUpper(name)
		case strings.HasPrefix(l, "a=fmtp:"):
			_, m.Fmtp, _ = strings.Cut(l, " ")
		}
	}
	return s
}

// Control returns the session-level control attribute, or "".
func (s *SDP) Control() string {
	for _, l := range s.session {
		if c, ok := strings.CutPrefix(l, "a=control:"); ok {
			return c
		}
	}
	return ""
}

// Rewrite returns the description with media i's control set to
// control(i) and no session-level control, which is how a relay serves a
// stream whose original URLs mean nothing to its readers.
func (s *SDP) Rewrite(control func(i int) string) []byte {
	var b strings.Builder
	for _, l := range s.session {
		if !strings.HasPrefix(l, "a=control:") {
			b.WriteString(l + "\r\n")
		}
	}
	for i, m := range s.Medias {
		for _, l := range m.lines {
			if !strings.HasPrefix(l, "a=control:") {
				b.WriteString(l + "\r\n")
			}
		}
		b.WriteString("a=control:" + control(i) + "\r\n")
	}
	return []byte(b.String())
}

// ParameterSets returns the H264 SPS and PPS of sprop-parameter-sets,
// which encoders that keep headers out of band (libx264 behind ffmpeg's
// RTSP muxer) send only there.
func (m Media) ParameterSets() [][]byte {
	var sets [][]byte
	for _, p := range strings.Split(m.Fmtp, ";") {
		v, ok := strings.CutPrefix(strings.TrimSpace(p), "sprop-parameter-sets=")
		if !ok {
			continue
		}
		for _, b64 := range strings.Split(v, ",") {
			if nal, err := base64.StdEncoding.DecodeString(b64); err == nil && len(nal) > 0 {
				sets = append(sets, nal)
			}
		}
	}
	return sets
}

// ResolveControl turns a control attribute into the URL to SETUP.
func ResolveControl(base, control string) string {
	switch {
	case control == "" || control == "*":
		return base
	case strings.Contains(control, "://"):
		return control
	case strings.HasSuffix(base, "/"):
		return base + control
	default:
		return base + "/" + control
	}
}

// Select returns the description with only the media at idx, in that
// order: a relay serves the tracks its source set up, not all it offered.
func (s *SDP) Select(idx []int) *SDP {
	out := &SDP{session: s.session}
	for _, i := range idx {
		out.Medias = append(out.Medias, s.Medias[i])
	}
	return out
}
