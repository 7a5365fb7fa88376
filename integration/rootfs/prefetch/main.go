// Command prefetch makes the integration tests' Debian trees (package
// rootfs) ahead of them: `make test` runs it in the background while the
// engines compile, since debootstrap mostly waits on the network and the
// disk while the compiler wants both cores.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/dockmoat/dockmoat/integration/rootfs"
)

func main() {
	logf := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	for _, mk := range []func(context.Context, func(string, ...any)) (string, error){rootfs.Base, rootfs.Host} {
		start := time.Now()
		out, err := mk(context.Background(), logf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "prefetch:", err)
			os.Exit(1)
		}
		fmt.Printf("%s ready (%s)\n", out, time.Since(start).Round(time.Second))
	}
}
