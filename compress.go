package scone

import (
	"bytes"
	"compress/flate"
	"io"
	"sync"
)

var (
	flateWriters = sync.Pool{New: func() any {
		w, err := flate.NewWriter(nil, flate.BestSpeed)
		if err != nil {
			panic("scone: flate.NewWriter: " + err.Error())
		}
		return w
	}}
	flateReaders = sync.Pool{New: func() any { return flate.NewReader(nil) }}
)

// deflate appends the DEFLATE compression of src to dst.
func deflate(dst, src []byte) []byte {
	buf := bytes.NewBuffer(dst)
	w := flateWriters.Get().(*flate.Writer)
	w.Reset(buf)
	_, err := w.Write(src)
	if err == nil {
		err = w.Close()
	}
	flateWriters.Put(w)
	if err != nil {
		panic("scone: deflate into memory: " + err.Error())
	}
	return buf.Bytes()
}

// inflate appends the decompression of src to dst, failing with
// CodeTooLarge past max bytes and CodeMalformed on a bad stream.
func inflate(dst, src []byte, max int) ([]byte, error) {
	r := flateReaders.Get().(io.ReadCloser)
	defer flateReaders.Put(r)
	if err := r.(flate.Resetter).Reset(bytes.NewReader(src), nil); err != nil {
		return dst, WrapError(CodeMalformed, "compressed data", err)
	}
	buf := bytes.NewBuffer(dst)
	n, err := buf.ReadFrom(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return dst, WrapError(CodeMalformed, "compressed data does not inflate", err)
	}
	if n > int64(max) {
		return dst, errCode(CodeTooLarge, "compressed data inflates past the limit")
	}
	return buf.Bytes(), nil
}
