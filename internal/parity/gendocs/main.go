// Command gendocs rewrites the tables of docs/spec.md and docs/aws.md from internal/parity (run by `go generate ./internal/parity`).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/haven-platform/haven/internal/parity"
)

func main() {
	root := flag.String("root", ".", "the repository root")
	flag.Parse()
	if err := parity.WriteDocs(*root); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
}
