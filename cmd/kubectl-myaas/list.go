package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

func newListCmd(e *env) *cobra.Command {
	var selector string
	var all bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List instances with their template, revision, phase, age, expiry and data age",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := e.connectCluster(); err != nil {
				return err
			}
			sel, err := labels.Parse(selector)
			if err != nil {
				return fmt.Errorf("--selector %q: %w", selector, err)
			}
			opts := []client.ListOption{client.MatchingLabelsSelector{Selector: sel}}
			if !all {
				opts = append(opts, client.InNamespace(e.namespace))
			}
			list := &myaasv1.DatabaseInstanceList{}
			if err := e.c.List(cmd.Context(), list, opts...); err != nil {
				return apiError(err, "list instances")
			}
			templates := e.templatesOf(cmd.Context(), list.Items)
			if len(list.Items) == 0 {
				fmt.Fprintf(e.Err, "no instances in namespace %s\n", e.namespace)
				return nil
			}
			return writeList(e.Out, list.Items, templates, all, time.Now())
		},
	}
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector (e.g. myaas.io/pr=123)")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list instances of every namespace")
	return cmd
}

func newStatusCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "status NAME",
		Short: "Show an instance: template, revision, phase, readiness, age, expiry and data age",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := e.connectCluster(); err != nil {
				return err
			}
			inst, err := e.getInstance(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			templates := e.templatesOf(cmd.Context(), []myaasv1.DatabaseInstance{*inst})
			return writeStatus(e.Out, inst, templates[templateKey(inst)], time.Now())
		},
	}
}

func templateKey(inst *myaasv1.DatabaseInstance) string {
	return inst.TemplateNamespace() + "/" + inst.Spec.TemplateRef.Name
}

// templatesOf fetches the templates the instances clone, for the age of their data. A template
// that is gone or unreadable only leaves the column empty.
func (e *env) templatesOf(ctx context.Context, items []myaasv1.DatabaseInstance) map[string]*myaasv1.DatabaseTemplate {
	out := map[string]*myaasv1.DatabaseTemplate{}
	for i := range items {
		key := templateKey(&items[i])
		if _, done := out[key]; done {
			continue
		}
		t := &myaasv1.DatabaseTemplate{}
		if err := e.c.Get(ctx, items[i].TemplateKey(), t); err != nil {
			t = nil
		}
		out[key] = t
	}
	return out
}

// dataImportedAt is when the dump of the instance's revision was imported, if still known.
func dataImportedAt(inst *myaasv1.DatabaseInstance, t *myaasv1.DatabaseTemplate) (time.Time, bool) {
	if t == nil || inst.Status.Revision == 0 {
		return time.Time{}, false
	}
	for _, r := range t.Status.Revisions {
		if r.Revision == inst.Status.Revision {
			return r.ImportedAt.Time, true
		}
	}
	return time.Time{}, false
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(now.Sub(t))
}

// expiry says when the instance goes: "in 1h30m", or "-" when it has no TTL.
func expiry(inst *myaasv1.DatabaseInstance, now time.Time) string {
	at := inst.Status.ExpiresAt
	if at == nil {
		at = inst.Spec.ExpiresAt
	}
	if at == nil && inst.Spec.TTL != nil {
		return "in " + duration.HumanDuration(inst.CreationTimestamp.Add(inst.Spec.TTL.Duration).Sub(now))
	}
	if at == nil {
		return "-"
	}
	if left := at.Sub(now); left > 0 {
		return "in " + duration.HumanDuration(left)
	}
	return "due"
}

func dataAge(inst *myaasv1.DatabaseInstance, t *myaasv1.DatabaseTemplate, now time.Time) string {
	at, ok := dataImportedAt(inst, t)
	if !ok {
		return "-"
	}
	return age(now, at)
}

func phase(inst *myaasv1.DatabaseInstance) string {
	if inst.DeletionTimestamp != nil {
		return "Deleting"
	}
	if inst.Status.Phase == "" {
		return "Pending"
	}
	return string(inst.Status.Phase)
}

func writeList(w io.Writer, items []myaasv1.DatabaseInstance, templates map[string]*myaasv1.DatabaseTemplate, withNamespace bool, now time.Time) error {
	sort.Slice(items, func(i, j int) bool {
		if items[i].Namespace != items[j].Namespace {
			return items[i].Namespace < items[j].Namespace
		}
		return items[i].Name < items[j].Name
	})
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	header := "NAME\tTEMPLATE\tREVISION\tPHASE\tAGE\tEXPIRES\tDATA AGE"
	if withNamespace {
		header = "NAMESPACE\t" + header
	}
	fmt.Fprintln(tw, header)
	for i := range items {
		inst := &items[i]
		row := []string{inst.Name, templateRefString(inst), revision(inst), phase(inst),
			age(now, inst.CreationTimestamp.Time), expiry(inst, now), dataAge(inst, templates[templateKey(inst)], now)}
		if withNamespace {
			row = append([]string{inst.Namespace}, row...)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func revision(inst *myaasv1.DatabaseInstance) string {
	if inst.Status.Revision == 0 {
		return "-"
	}
	return fmt.Sprint(inst.Status.Revision)
}

func writeStatus(w io.Writer, inst *myaasv1.DatabaseInstance, t *myaasv1.DatabaseTemplate, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	line("Name", inst.Name)
	line("Namespace", inst.Namespace)
	line("Template", templateRefString(inst))
	line("Revision", revision(inst))
	line("Phase", phase(inst))
	if c := meta.FindStatusCondition(inst.Status.Conditions, myaasv1.ConditionReady); c != nil {
		line("Ready", fmt.Sprintf("%s (%s) %s", c.Status, c.Reason, c.Message))
	}
	line("Age", age(now, inst.CreationTimestamp.Time))
	line("Expires", expiry(inst, now))
	if at, ok := dataImportedAt(inst, t); ok {
		line("Data age", fmt.Sprintf("%s (imported %s)", age(now, at), at.UTC().Format(time.RFC3339)))
	} else {
		line("Data age", "-")
	}
	if ep := inst.Status.Endpoint; ep != nil {
		line("Endpoint", fmt.Sprintf("%s:%d", ep.Host, ep.Port))
	}
	if inst.Status.SecretName != "" {
		line("Secret", inst.Status.SecretName)
	}
	if inst.Status.TimeToReady != nil {
		line("Time to Ready", inst.Status.TimeToReady.Duration.String())
	}
	line("Resets", fmt.Sprint(inst.Status.Resets))
	if inst.Spec.Suspend {
		line("Suspended", "true (connect, port-forward and reset resume it)")
	}
	if len(inst.Labels) > 0 {
		line("Labels", labels.Set(inst.Labels).String())
	}
	return tw.Flush()
}
