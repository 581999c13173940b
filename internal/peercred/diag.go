package peercred

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// SocketUID returns the user (uid) owning the local TCP socket whose own
// end is local and whose peer is remote: one exact sock_diag lookup over
// netlink (what ss(8) uses), whatever the number of sockets on the
// machine, where /proc/net/tcp would have to be read whole.
func SocketUID(local, remote netip.AddrPort) (int, error) {
	uid, _, err := SocketOwner(local, remote)
	return uid, err
}

// SocketOwner returns the user (uid) and the inode of the local TCP socket
// whose own end is local and whose peer is remote, with one sock_diag
// lookup.
func SocketOwner(local, remote netip.AddrPort) (uid int, inode uint64, err error) {
	const (
		sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
		reqLen           = 56 // struct inet_diag_req_v2
		msgUID           = 64 // offset of idiag_uid in struct inet_diag_msg
		msgInode         = 68 // offset of idiag_inode
	)
	l, r := local.Addr().Unmap(), remote.Addr().Unmap()
	family := uint8(unix.AF_INET6)
	if l.Is4() && r.Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, 0, fmt.Errorf("look up socket owner: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 1}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)

	msg := make([]byte, unix.NLMSG_HDRLEN+reqLen)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], sockDiagByFamily)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	req := msg[unix.NLMSG_HDRLEN:]
	req[0], req[1] = family, unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(req[4:], 0xffffffff) // every state
	id := req[8:]
	binary.BigEndian.PutUint16(id[0:], local.Port())
	binary.BigEndian.PutUint16(id[2:], remote.Port())
	putAddr(id[4:20], l)
	putAddr(id[20:36], r)
	binary.NativeEndian.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	binary.NativeEndian.PutUint32(id[44:], 0xffffffff)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return -1, 0, fmt.Errorf("look up socket owner: send: %w", err)
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("look up socket owner: receive: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil || len(msgs) == 0 {
		return -1, 0, fmt.Errorf("look up socket owner: parse reply: %v", err)
	}
	m := msgs[0]
	if m.Header.Type == syscall.NLMSG_ERROR {
		if len(m.Data) >= 4 {
			if errno := unix.Errno(-int32(binary.NativeEndian.Uint32(m.Data))); errno != 0 {
				return -1, 0, fmt.Errorf("look up socket owner of %s: %w (not a local process)", local, errno)
			}
		}
		return -1, 0, errors.New("look up socket owner: empty error reply")
	}
	if len(m.Data) < msgInode+4 {
		return -1, 0, fmt.Errorf("look up socket owner: short reply (%d bytes)", len(m.Data))
	}
	return int(binary.NativeEndian.Uint32(m.Data[msgUID:])), uint64(binary.NativeEndian.Uint32(m.Data[msgInode:])), nil
}

// putAddr writes a as inet_diag writes addresses: IPv4 in the first word.
func putAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}
