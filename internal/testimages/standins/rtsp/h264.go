package rtsp

import (
	"encoding/binary"

	"github.com/yapingcat/gomedia/go-rtsp/rtp"
)

// H264Assembler turns RTP packets of one H264 track into access units
// (Annex B, all NAL units of one picture). gomedia's unpacker yields NAL
// units one at a time; a picture ends at the RTP marker bit or, for
// senders that omit it, where the timestamp changes.
type H264Assembler struct {
	// OnAccessUnit receives each picture and its 90 kHz RTP timestamp.
	OnAccessUnit func(au []byte, ts uint32)

	unpack *rtp.H264UnPacker
	au     []byte
	ts     uint32
}

// NewH264Assembler returns an assembler calling onAU per picture.
func NewH264Assembler(onAU func(au []byte, ts uint32)) *H264Assembler {
	a := &H264Assembler{OnAccessUnit: onAU, unpack: rtp.NewH264UnPacker()}
	a.unpack.OnFrame(func(nalu []byte, _ uint32, lost bool) {
		if !lost { // a NAL unit missing fragments would only break decoders
			a.au = append(a.au, nalu...)
		}
	})
	return a
}

// Write feeds one RTP packet; packet types the unpacker does not know
// are dropped, as a decoder would.
func (a *H264Assembler) Write(pkt []byte) {
	if len(pkt) < 12 {
		return
	}
	ts := binary.BigEndian.Uint32(pkt[4:])
	if len(a.au) > 0 && ts != a.ts {
		a.flush()
	}
	a.ts = ts
	_ = a.unpack.UnPack(pkt)
	if pkt[1]&0x80 != 0 {
		a.flush()
	}
}

func (a *H264Assembler) flush() {
	if len(a.au) == 0 {
		return
	}
	au := a.au
	a.au = nil
	a.OnAccessUnit(au, a.ts)
}
