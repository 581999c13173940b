package main

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/png"
	"net/http"
)

// faviconICO draws the site icon (a white open book on the header's navy,
// as web/static/favicon.svg) and wraps it as a 32×32 PNG inside an ICO
// file, which every browser accepts at /favicon.ico.
func faviconICO() []byte {
	const n = 32
	navy := color.NRGBA{0x12, 0x35, 0x5b, 0xff}
	white := color.NRGBA{0xff, 0xff, 0xff, 0xff}
	img := image.NewNRGBA(image.Rect(0, 0, n, n))
	for y := range n {
		for x := range n {
			// A rounded square: cut the corners at radius 6.
			dx, dy := max(6-x, x-(n-7), 0), max(6-y, y-(n-7), 0)
			if dx*dx+dy*dy <= 36 {
				img.SetNRGBA(x, y, navy)
			}
			// Two pages with a spine between them.
			if y >= 9 && y <= 23 && ((x >= 6 && x <= 14) || (x >= 17 && x <= 25)) {
				img.SetNRGBA(x, y, white)
			}
		}
	}
	var p bytes.Buffer
	_ = png.Encode(&p, img) // encoding an in-memory image cannot fail
	var b bytes.Buffer
	// ICONDIR: reserved, type 1 (icon), one image.
	_ = binary.Write(&b, binary.LittleEndian, [3]uint16{0, 1, 1})
	// ICONDIRENTRY: width, height, colours, reserved, planes, bits per
	// pixel, size of the PNG, its offset (6 + 16).
	b.Write([]byte{n, n, 0, 0})
	_ = binary.Write(&b, binary.LittleEndian, [2]uint16{1, 32})
	_ = binary.Write(&b, binary.LittleEndian, [2]uint32{uint32(p.Len()), 22})
	b.Write(p.Bytes())
	return b.Bytes()
}

func (s *Server) faviconHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "image/x-icon")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	_, _ = w.Write(s.favicon)
}
