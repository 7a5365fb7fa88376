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

// nftMsg is an nf_tables notification of kind msg in family fam.
func nftMsg(msg uint16, fam uint8, attrs ...[]byte) []byte {
	body := []byte{fam, 0, 0, 0}
	for _, a := range attrs {
		body = append(body, a...)
	}
	return message(unix.NFNL_SUBSYS_NFTABLES<<8|msg, body)
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// TestChangesRead: which notifications count, and that a generation is
// charged with the relevant changes read before its NEWGEN.
func TestChangesRead(t *testing.T) {
	newgen := func(g uint32) []byte {
		return nftMsg(unix.NFT_MSG_NEWGEN, 0, attr(unix.NFTA_GEN_ID, binary.BigEndian.AppendUint32(nil, g)))
	}
	rule := func(fam uint8, table, chain string) []byte {
		return nftMsg(unix.NFT_MSG_NEWRULE, fam, attr(unix.NFTA_RULE_TABLE, cstr(table)), attr(unix.NFTA_RULE_CHAIN, cstr(chain)))
	}
	var got []Change
	c := &Changes{since: 10, seen: 10, relevant: func(ch Change) bool {
		got = append(got, ch)
		return ch.Table == "filter" && (!ch.Rule || ch.Chain == "FORWARD")
	}}
	// Docker's connect: nat and its own filter chain. One datagram may
	// carry several messages.
	c.read(append(append(rule(2, "nat", "DOCKER"), rule(2, "filter", "DOCKER")...), newgen(11)...))
	if !c.quietUpTo(10, 11) {
		t.Fatalf("Docker's chains counted as relevant: %+v", got)
	}
	if want := (Change{Family: 2, Table: "filter", Chain: "DOCKER", Rule: true}); len(got) != 2 || got[1] != want {
		t.Fatalf("changes read %+v, want the second %+v", got, want)
	}
	c.read(rule(2, "filter", "FORWARD"))
	c.read(newgen(12))
	c.read(append(rule(2, "nat", "DOCKER"), newgen(13)...))
	if c.quietUpTo(11, 13) || !c.quietUpTo(12, 13) {
		t.Fatal("a rule in FORWARD at 12: (11, 13] is not quiet, (12, 13] is")
	}
	chain := nftMsg(unix.NFT_MSG_DELCHAIN, 2, attr(unix.NFTA_CHAIN_TABLE, cstr("filter")), attr(unix.NFTA_CHAIN_NAME, cstr("DOCKER")))
	c.read(append(chain, newgen(14)...))
	if c.quietUpTo(13, 14) || got[len(got)-1] != (Change{Family: 2, Table: "filter", Chain: "DOCKER"}) {
		t.Fatalf("a deleted chain is relevant: %+v", got[len(got)-1])
	}
	// Lost notifications charge the next generation.
	c.lost = true
	c.read(newgen(15))
	if c.quietUpTo(14, 15) {
		t.Fatal("an overrun before 15 counted as quiet")
	}
	// Not yet read up to the current generation, or from before the
	// subscription: cannot tell.
	if c.quietUpTo(15, 16) || c.quietUpTo(9, 15) {
		t.Fatal("quiet without the notifications")
	}
	// A message cut short is an overrun too.
	c.read([]byte{200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	c.read(newgen(16))
	if c.quietUpTo(15, 16) {
		t.Fatal("an unreadable message counted as quiet")
	}
}
