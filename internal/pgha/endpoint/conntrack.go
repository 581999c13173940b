package endpoint

import (
	"encoding/binary"
	"fmt"
	"syscall"
)

// flushConntrackMark deletes every IPv4 conntrack entry whose mark & mask
// == mark (a ctnetlink flush with a mark filter), so the kernel forgets the
// translation of connections an endpoint admitted. The next packet of such a
// connection is no longer translated: it reaches no socket and is answered
// with a reset.
func flushConntrackMark(mark, mask uint32) error {
	const (
		nfnlSubsysCtnetlink = 1
		ipctnlMsgCtDelete   = 2
		ctaMark             = 8
		ctaMarkMask         = 21
	)
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("flush conntrack: open netlink socket: %w", err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return fmt.Errorf("flush conntrack: bind netlink socket: %w", err)
	}
	tv := syscall.Timeval{Sec: 5}
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)

	attr := func(typ uint16, v uint32) []byte {
		b := make([]byte, 8)
		binary.NativeEndian.PutUint16(b[0:], 8)
		binary.NativeEndian.PutUint16(b[2:], typ)
		binary.BigEndian.PutUint32(b[4:], v)
		return b
	}
	// nlmsghdr (16) + nfgenmsg (4: family, version, res_id) + attributes.
	msg := make([]byte, 20)
	msg[16] = syscall.AF_INET
	msg = append(msg, attr(ctaMark, mark)...)
	msg = append(msg, attr(ctaMarkMask, mask)...)
	const seq = 1
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], nfnlSubsysCtnetlink<<8|ipctnlMsgCtDelete)
	binary.NativeEndian.PutUint16(msg[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], seq)
	if err := syscall.Sendto(fd, msg, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return fmt.Errorf("flush conntrack: send: %w", err)
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("flush conntrack: receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("flush conntrack: parse reply: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq || m.Header.Type != syscall.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
				if syscall.Errno(errno) == syscall.ENOENT {
					return nil // nothing to delete
				}
				return fmt.Errorf("flush conntrack: %w", syscall.Errno(errno))
			}
			return nil
		}
	}
}
