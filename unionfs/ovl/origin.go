package ovl

import (
	"encoding/binary"
	"encoding/hex"
)

// Origin file handles, as overlayfs writes them in OVERLAY.origin and
// names its index entries by: "struct ovl_fb" — version 0, magic 0xfb,
// total length, flags (0: little-endian, lower layer), the handle type,
// the lower filesystem's uuid (all zero when the layers share the
// upper's filesystem, which is the only case strata writes) and the
// file handle itself.
const (
	fbMagic     = 0xfb
	fbHeaderLen = 21 // 5 bytes of header fields + 16 of uuid
)

// EncodeOrigin builds the ovl_fb of a lower file from its file handle.
func EncodeOrigin(handleType int32, fid []byte) []byte {
	fb := make([]byte, 0, fbHeaderLen+len(fid))
	fb = append(fb, 0, fbMagic, byte(fbHeaderLen+len(fid)), 0, byte(handleType))
	fb = append(fb, make([]byte, 16)...)
	return append(fb, fid...)
}

// IndexName is the name of the index entry of the file whose origin is fb.
func IndexName(fb []byte) string { return hex.EncodeToString(fb) }

// ParseIndexName is the origin an index entry name stands for.
func ParseIndexName(name string) ([]byte, bool) {
	fb, err := hex.DecodeString(name)
	return fb, err == nil
}

// OriginIno returns the lower inode number an origin names, for the handle
// types that carry it (FILEID_INO32_GEN and _PARENT: ext4, xfs and most
// local filesystems, the first four bytes of the handle).
func OriginIno(fb []byte) (uint64, bool) {
	if len(fb) < fbHeaderLen+4 || fb[1] != fbMagic || (fb[4] != 1 && fb[4] != 2) {
		return 0, false
	}
	return uint64(binary.LittleEndian.Uint32(fb[fbHeaderLen : fbHeaderLen+4])), true
}
