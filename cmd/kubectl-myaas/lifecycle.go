package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

func newResetCmd(e *env) *cobra.Command {
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "reset NAME",
		Short: "Reset the instance to the template's latest revision, in place",
		Long: `Throw the instance's data away and clone the template's latest revision under the same name,
Service and credentials. With --wait, return once the reset instance is Ready. A suspended
instance is resumed by the same change: its old data would be thrown away anyway.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := e.connectCluster(); err != nil {
				return err
			}
			return e.reset(cmd.Context(), args[0], wait, timeout)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the reset instance is Ready")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait")
	return cmd
}

func (e *env) reset(ctx context.Context, name string, wait bool, timeout time.Duration) error {
	inst, err := e.getInstance(ctx, name)
	if err != nil {
		return err
	}
	before := inst.Status.Resets
	// A value never used before: the operator acts on every change of the annotation.
	token := time.Now().UTC().Format("20060102T150405.000000000Z")
	patch := map[string]any{"metadata": map[string]any{"annotations": map[string]string{myaasv1.AnnotationReset: token}}}
	if inst.Spec.Suspend {
		patch["spec"] = map[string]any{"suspend": false}
		fmt.Fprintf(e.Err, "resuming suspended instance %s\n", name)
	}
	if err := e.mergePatch(ctx, inst, patch); err != nil {
		return apiError(err, "reset instance "+name)
	}
	if !wait {
		fmt.Fprintf(e.Out, "instance %s reset requested\n", name)
		return nil
	}
	start := time.Now()
	inst, err = e.waitInstance(ctx, name, timeout, func(i *myaasv1.DatabaseInstance) bool {
		return i.Status.HandledReset == token && i.Status.Resets > before && isReady(i)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Out, "instance %s reset to revision %d, Ready after %s\n", name, inst.Status.Revision, time.Since(start).Round(100*time.Millisecond))
	return nil
}

func (e *env) mergePatch(ctx context.Context, obj client.Object, patch map[string]any) error {
	b, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	return e.c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, b))
}

func newExtendCmd(e *env) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "extend NAME --ttl DURATION",
		Short: "Keep the instance until now + DURATION",
		Long: `Set the instance's expiry to now + --ttl (spec.expiresAt), replacing a spec.ttl counted from its
creation: "extend pr-1 --ttl 4h" always means four more hours from now, however old it is.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl <= 0 {
				return fmt.Errorf("--ttl must be positive (e.g. 4h)")
			}
			if err := e.connectCluster(); err != nil {
				return err
			}
			inst, err := e.getInstance(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			at := metav1.NewTime(time.Now().Add(ttl).UTC().Truncate(time.Second))
			// ttl and expiresAt exclude each other: the new expiry replaces the TTL.
			patch := map[string]any{"spec": map[string]any{"ttl": nil, "expiresAt": at}}
			if err := e.mergePatch(cmd.Context(), inst, patch); err != nil {
				return apiError(err, "extend instance "+inst.Name)
			}
			fmt.Fprintf(e.Out, "instance %s expires at %s\n", inst.Name, at.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "how long from now to keep the instance (required)")
	_ = cmd.MarkFlagRequired("ttl")
	return cmd
}

func newDeleteCmd(e *env) *cobra.Command {
	var selector string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "delete NAME... | --selector SELECTOR",
		Short: "Delete instances, with everything they own",
		Long: `Delete instances by name or label selector. With --wait (the default) it returns once the
instances and everything they own (pod, volume clone, Service, Secret) are gone. Deleting an
instance that does not exist is not an error, so a pipeline's clean-up can run twice.`,
		Example: `  kubectl myaas delete pr-123
  kubectl myaas delete --selector myaas.io/pr=123`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 0) == (selector == "") {
				return fmt.Errorf("give instance names or --selector, not both or neither")
			}
			if err := e.connectCluster(); err != nil {
				return err
			}
			names := args
			if selector != "" {
				var err error
				if names, err = e.namesBySelector(cmd.Context(), selector); err != nil {
					return err
				}
				if len(names) == 0 {
					fmt.Fprintf(e.Err, "no instances match %q in namespace %s\n", selector, e.namespace)
				}
			}
			return e.deleteInstances(cmd.Context(), names, wait, timeout)
		},
	}
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "delete the instances matching this label selector")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the instances and their children are gone")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait")
	return cmd
}

func (e *env) namesBySelector(ctx context.Context, selector string) ([]string, error) {
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, fmt.Errorf("selector %q: %w", selector, err)
	}
	list := &myaasv1.DatabaseInstanceList{}
	if err := e.c.List(ctx, list, client.InNamespace(e.namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, apiError(err, "list instances")
	}
	var names []string
	for _, i := range list.Items {
		names = append(names, i.Name)
	}
	return names, nil
}

// deleteInstances deletes in the foreground: the instance stays until its children are gone, so
// "deleted" means nothing of it is left, and the name can be used again at once.
func (e *env) deleteInstances(ctx context.Context, names []string, wait bool, timeout time.Duration) error {
	for _, name := range names {
		inst := &myaasv1.DatabaseInstance{ObjectMeta: metav1.ObjectMeta{Namespace: e.namespace, Name: name}}
		err := e.c.Delete(ctx, inst, client.PropagationPolicy(metav1.DeletePropagationForeground))
		switch {
		case apierrors.IsNotFound(err) && !isCRDMissing(err):
			fmt.Fprintf(e.Err, "instance %s not found; nothing to delete\n", name)
		case err != nil:
			return apiError(err, "delete instance "+name)
		default:
			fmt.Fprintf(e.Out, "instance %s deleted\n", name)
		}
	}
	if !wait {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for _, name := range names {
		if err := e.waitGone(ctx, name, time.Until(deadline)); err != nil {
			return err
		}
	}
	return nil
}
