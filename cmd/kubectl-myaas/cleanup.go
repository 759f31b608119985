package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

type cleanupOptions struct {
	repository string
	closedPRs  []string
	openPRs    []string
	olderThan  time.Duration
	dryRun     bool
	wait       bool
	timeout    time.Duration
}

func newCleanupCmd(e *env) *cobra.Command {
	o := &cleanupOptions{}
	cmd := &cobra.Command{
		Use:   "cleanup --repository OWNER/NAME (--closed-prs N,... | --open-prs N,... | --older-than DURATION)",
		Short: "Delete a repository's pipeline instances of closed pull requests, or older than a limit",
		Long: `Delete the instances that the CI integrations made for a repository (labelled
myaas.io/repository), for a scheduled job that catches what a missed "closed" event left:
  --closed-prs 1,2   the instances of these pull requests
  --open-prs 3,4     every pull request instance except these (pass the open ones)
  --older-than 72h   every instance of the repository created longer ago than this
Several criteria delete what any of them selects.`,
		Example: `  kubectl myaas cleanup --repository acme/shop --closed-prs 118,121
  kubectl myaas cleanup --repository acme/shop --open-prs "$(gh pr list --json number -q 'map(.number)|join(",")')"
  kubectl myaas cleanup --repository acme/shop --older-than 72h --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(cmd.Flags().Changed("open-prs")); err != nil {
				return err
			}
			if err := e.connectCluster(); err != nil {
				return err
			}
			return e.cleanup(cmd.Context(), o, cmd.Flags().Changed("open-prs"), time.Now())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.repository, "repository", "", "repository whose instances to consider, as OWNER/NAME (required)")
	f.StringSliceVar(&o.closedPRs, "closed-prs", nil, "pull request numbers whose instances go")
	f.StringSliceVar(&o.openPRs, "open-prs", nil, "pull request numbers whose instances stay; every other PR instance goes (may be empty)")
	f.DurationVar(&o.olderThan, "older-than", 0, "delete the repository's instances created longer ago than this")
	f.BoolVar(&o.dryRun, "dry-run", false, "print what would be deleted")
	f.BoolVar(&o.wait, "wait", true, "wait until the deleted instances are gone")
	f.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait")
	_ = cmd.MarkFlagRequired("repository")
	return cmd
}

func (o *cleanupOptions) validate(openGiven bool) error {
	if len(o.closedPRs) == 0 && !openGiven && o.olderThan <= 0 {
		return fmt.Errorf("give at least one of --closed-prs, --open-prs, --older-than")
	}
	for _, list := range [][]string{o.closedPRs, o.openPRs} {
		for _, n := range list {
			if _, err := strconv.ParseUint(strings.TrimSpace(n), 10, 32); err != nil {
				return fmt.Errorf("pull request number %q: want a positive integer", n)
			}
		}
	}
	return nil
}

// cleanupVictims picks, among a repository's instances, those the options select.
func cleanupVictims(items []myaasv1.DatabaseInstance, o *cleanupOptions, openGiven bool, now time.Time) []string {
	set := func(l []string) map[string]bool {
		m := map[string]bool{}
		for _, n := range l {
			m[strings.TrimSpace(n)] = true
		}
		return m
	}
	closed, open := set(o.closedPRs), set(o.openPRs)
	var out []string
	for _, inst := range items {
		pr, isPR := inst.Labels[LabelPR]
		switch {
		case isPR && closed[pr],
			isPR && openGiven && !open[pr],
			o.olderThan > 0 && now.Sub(inst.CreationTimestamp.Time) > o.olderThan:
			out = append(out, inst.Name)
		}
	}
	sort.Strings(out)
	return out
}

func (e *env) cleanup(ctx context.Context, o *cleanupOptions, openGiven bool, now time.Time) error {
	req, err := labels.NewRequirement(LabelRepository, selection.Equals, []string{sanitizeLabelValue(o.repository)})
	if err != nil {
		return fmt.Errorf("--repository %q: %w", o.repository, err)
	}
	list := &myaasv1.DatabaseInstanceList{}
	if err := e.c.List(ctx, list, client.InNamespace(e.namespace), client.MatchingLabelsSelector{Selector: labels.NewSelector().Add(*req)}); err != nil {
		return apiError(err, "list instances")
	}
	victims := cleanupVictims(list.Items, o, openGiven, now)
	if len(victims) == 0 {
		fmt.Fprintf(e.Err, "nothing to clean up among %d instance(s) of %s\n", len(list.Items), o.repository)
		return nil
	}
	if o.dryRun {
		for _, n := range victims {
			fmt.Fprintf(e.Out, "instance %s would be deleted\n", n)
		}
		return nil
	}
	return e.deleteInstances(ctx, victims, o.wait, o.timeout)
}
