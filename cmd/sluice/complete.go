package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-run/sluice/config"
)

// completionTimeout bounds the runtime look-up behind a shell completion:
// a completion that hangs is worse than none.
const completionTimeout = 2 * time.Second

// completeNames completes the first n arguments with names read from the
// config the running runtime recorded; without a runtime it offers none.
func completeNames(g *globals, n int, names func(*config.Effective) []string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) >= n {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, done, err := g.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer done()
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		raw, err := c.RunningConfig(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		eff, err := config.DecodeEffective(raw)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names(eff), cobra.ShellCompDirectiveNoFileComp
	}
}

func completeBindings(g *globals, n int) cobra.CompletionFunc {
	return completeNames(g, n, (*config.Effective).BindingNames)
}

func completeFunctions(g *globals, n int) cobra.CompletionFunc {
	return completeNames(g, n, (*config.Effective).FunctionNames)
}
