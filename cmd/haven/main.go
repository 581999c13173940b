// Command haven runs the highly available web app reference architecture:
// a local region on one machine, and the same spec as Terraform for AWS.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/haven-platform/haven/internal/termsafe"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:])
	stop()
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(termsafe.Writer(os.Stderr), "haven: "+ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(termsafe.Writer(os.Stderr), "haven: "+err.Error())
		os.Exit(1)
	}
}

// exitError carries an exit code other than 1, e.g. a drill that failed.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// Run executes the haven CLI with args (without the program name).
func Run(ctx context.Context, args []string) error {
	root := newRoot()
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}
