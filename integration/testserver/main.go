// Command testserver is the workload of dockmoat's integration tests: a
// static binary, packed FROM scratch, that answers on every TCP and UDP
// port given as arguments ("80", "53/udp", "8000/tcp") with one line naming
// itself, so a test knows not only that a port answered but who did.
// "7000/echo" keeps TCP sessions open and echoes each line back. With
// "connect HOST:PORT" it instead dials out once and prints the answer, to
// prove containers' outbound traffic still works.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "connect" {
		os.Exit(connect(os.Args[2]))
	}
	name, _ := os.Hostname()
	if n := os.Getenv("NAME"); n != "" {
		name = n
	}
	for _, arg := range os.Args[1:] {
		port, proto, _ := strings.Cut(arg, "/")
		if proto == "" || proto == "tcp" || proto == "echo" {
			go serveTCP(name, port, proto == "echo")
		}
		if proto == "" || proto == "udp" {
			go serveUDP(name, port)
		}
	}
	select {}
}

func serveTCP(name, port string, echo bool) {
	l, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen tcp:", err)
		os.Exit(1)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "hello from %s tcp/%s to %s\n", name, port, c.RemoteAddr())
			if !echo {
				return
			}
			// Echo mode keeps the session open: each line comes back.
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := c.Write([]byte(line)); err != nil {
					return
				}
			}
		}()
	}
}

func serveUDP(name, port string) {
	pc, err := net.ListenPacket("udp", ":"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen udp:", err)
		os.Exit(1)
	}
	buf := make([]byte, 1500)
	for {
		_, addr, err := pc.ReadFrom(buf)
		if err != nil {
			continue
		}
		_, _ = pc.WriteTo([]byte(fmt.Sprintf("hello from %s udp/%s to %s\n", name, port, addr)), addr)
	}
}

func connect(addr string) int {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		fmt.Println("connect failed:", err)
		return 1
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Println("read failed:", err)
		return 1
	}
	fmt.Print(line)
	return 0
}
