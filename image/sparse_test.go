package image

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

type fragment struct {
	off  int64
	data string
}

// sparseTar builds a one-file layer tar in one of GNU's PAX sparse formats
// ("0.1": the map in PAX records; "1.0": the map ahead of the data, what
// `tar --sparse --posix` writes). archive/tar reads both but writes
// neither, so the blocks are laid out by hand.
func sparseTar(t *testing.T, format, name string, size int64, frags []fragment) []byte {
	t.Helper()
	var data bytes.Buffer
	var records []string
	switch format {
	case "1.0":
		fmt.Fprintf(&data, "%d\n", len(frags))
		for _, f := range frags {
			fmt.Fprintf(&data, "%d\n%d\n", f.off, len(f.data))
		}
		data.Write(make([]byte, pad512(data.Len())))
		records = []string{"GNU.sparse.major=1", "GNU.sparse.minor=0", "GNU.sparse.name=" + name,
			"GNU.sparse.realsize=" + strconv.FormatInt(size, 10)}
		name = "GNUSparseFile.0/" + name
	case "0.1":
		var m []string
		for _, f := range frags {
			m = append(m, strconv.FormatInt(f.off, 10), strconv.Itoa(len(f.data)))
		}
		records = []string{"GNU.sparse.size=" + strconv.FormatInt(size, 10),
			"GNU.sparse.numblocks=" + strconv.Itoa(len(frags)), "GNU.sparse.map=" + strings.Join(m, ",")}
	default:
		t.Fatalf("sparse format %q", format)
	}
	for _, f := range frags {
		data.WriteString(f.data)
	}
	var pax bytes.Buffer
	for _, r := range records {
		pax.WriteString(paxRecord(r))
	}
	var out bytes.Buffer
	out.Write(ustarHeader(t, "PaxHeaders/"+filepath.Base(name), 'x', int64(pax.Len())))
	out.Write(pax.Bytes())
	out.Write(make([]byte, pad512(pax.Len())))
	out.Write(ustarHeader(t, name, '0', int64(data.Len())))
	out.Write(data.Bytes())
	out.Write(make([]byte, pad512(data.Len())+1024))
	return out.Bytes()
}

func pad512(n int) int { return (512 - n%512) % 512 }

// paxRecord is "LEN key=value\n", LEN counting itself.
func paxRecord(kv string) string {
	n := len(kv) + 2
	for n != len(strconv.Itoa(n))+len(kv)+2 {
		n = len(strconv.Itoa(n)) + len(kv) + 2
	}
	return strconv.Itoa(n) + " " + kv + "\n"
}

func ustarHeader(t *testing.T, name string, typ byte, size int64) []byte {
	t.Helper()
	if len(name) > 100 {
		t.Fatalf("name %q too long", name)
	}
	b := make([]byte, 512)
	copy(b[0:], name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], "00000000000\x00")
	b[156] = typ
	copy(b[257:], "ustar\x0000")
	copy(b[148:], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return buf.Bytes()
}

// TestUnpackSparse: a few KiB of layer that declares a file of 1.1 GiB,
// mostly holes (GNU sparse) or zeros (a plain entry, compressed), unpacks
// to a file of that size that takes next to no disk and reads back right;
// its apparent size is what the layer's size reports and the limit bounds.
func TestUnpackSparse(t *testing.T) {
	const big = 1100 << 20
	frags := []fragment{{0, "head"}, {512 << 20, "middle of it"}, {big - 4, "tail"}}
	zeros := func() []byte {
		const size = 64 << 20
		body := make([]byte, size)
		copy(body[1<<20:], "data")
		copy(body[size-3:], "end")
		return mkTar(t, file("zeros", string(body), 0o644, 0, 0))
	}
	cases := []struct {
		name, file string
		tar        []byte
		size       int64
		want       []fragment
	}{
		{"gnu-pax-1.0", "sparse", sparseTar(t, "1.0", "sparse", big, frags), big, frags},
		{"gnu-pax-0.1", "sparse", sparseTar(t, "0.1", "sparse", big, frags), big, frags},
		{"gnu-pax-1.0-only-holes", "empty", sparseTar(t, "1.0", "empty", big, nil), big, nil},
		{"zeros-compressed", "zeros", zeros(), 64 << 20, []fragment{{1 << 20, "data"}, {64<<20 - 3, "end"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			blob := gzipped(t, c.tar)
			t.Logf("layer: %d bytes gzipped", len(blob))
			s, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			s.MaxLayerSize = 2 << 30
			id, size, err := s.AddLayer(bytes.NewReader(blob), "")
			if err != nil {
				t.Fatal(err)
			}
			if size != c.size {
				t.Errorf("layer size %d, want the apparent size %d", size, c.size)
			}
			p := filepath.Join(s.LayerDir(id), c.file)
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil {
				t.Fatal(err)
			}
			if st.Size != c.size {
				t.Errorf("size %d, want %d", st.Size, c.size)
			}
			if used := st.Blocks * 512; used > 1<<20 {
				t.Errorf("takes %d bytes on disk for a few bytes of data: holes were written out", used)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// Each fragment, with the zero byte on either side of it.
			for _, w := range c.want {
				from, to := max(w.off-1, 0), min(w.off+int64(len(w.data))+1, c.size)
				want := strings.Repeat("\x00", int(w.off-from)) + w.data + strings.Repeat("\x00", int(to-w.off)-len(w.data))
				got := make([]byte, to-from)
				if _, err := f.ReadAt(got, from); err != nil {
					t.Fatal(err)
				}
				if string(got) != want {
					t.Errorf("at %d: %q, want %q", from, got, want)
				}
			}
		})
	}
}
