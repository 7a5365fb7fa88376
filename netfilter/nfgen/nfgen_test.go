package nfgen

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// message builds a netlink message of type typ with body.
func message(typ uint16, body []byte) []byte {
	b := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	b = append(b, body...)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	return b
}

// attr is one netlink attribute, padded to 4 bytes.
func attr(typ uint16, v []byte) []byte {
	a := make([]byte, 4, 4+len(v)+3)
	binary.NativeEndian.PutUint16(a[0:], uint16(4+len(v)))
	binary.NativeEndian.PutUint16(a[2:], typ)
	a = append(a, v...)
	for len(a)%4 != 0 {
		a = append(a, 0)
	}
	return a
}

func TestParse(t *testing.T) {
	newgen := uint16(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN)
	id := binary.BigEndian.AppendUint32(nil, 0x01020304)
	// NFTA_GEN_PROC_NAME before the id: attributes are walked, not indexed.
	body := append([]byte{0, 0, 0, 0}, append(attr(3, []byte("nft\x00\x00")), attr(unix.NFTA_GEN_ID, id)...)...)
	if g, err := parse(message(newgen, body)); err != nil || g != 0x01020304 {
		t.Errorf("NEWGEN: %#x, %v", g, err)
	}
	code := -int32(unix.EPERM)
	errBody := binary.NativeEndian.AppendUint32(nil, uint32(code))
	if _, err := parse(message(unix.NLMSG_ERROR, errBody)); !errors.Is(err, unix.EPERM) {
		t.Errorf("error answer: %v, want EPERM", err)
	}
	for name, b := range map[string][]byte{
		"short":        {1, 2, 3},
		"no id":        message(newgen, append([]byte{0, 0, 0, 0}, attr(3, []byte("nft\x00"))...)),
		"other type":   message(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWTABLE, body),
		"bad attr len": message(newgen, []byte{0, 0, 0, 0, 200, 0, 1, 0}),
	} {
		if g, err := parse(b); err == nil {
			t.Errorf("%s: parsed as %d", name, g)
		}
	}
}

// TestRequest: the header says its own length and asks for GETGEN.
func TestRequest(t *testing.T) {
	b := request()
	if int(binary.NativeEndian.Uint32(b)) != len(b) || binary.NativeEndian.Uint16(b[4:]) != unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETGEN {
		t.Errorf("request % x", b)
	}
}
