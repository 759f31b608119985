package main

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

type createOptions struct {
	template string
	ttl      time.Duration
	revision int32
	labels   []string
	wait     bool
	timeout  time.Duration
	output   string
}

func newCreateCmd(e *env) *cobra.Command {
	o := &createOptions{}
	cmd := &cobra.Command{
		Use:   "create NAME --template TEMPLATE",
		Short: "Create an instance (or reuse the one of that name) and print its connection details once Ready",
		Long: `Create a DatabaseInstance cloned from a template and print its connection details once it is
Ready. Running it again for an existing instance of the same template changes nothing and prints
the same details, so a pipeline can run it on every push; a suspended instance is resumed.`,
		Example: `  kubectl myaas create pr-123 --template shop --ttl 2h -o env
  eval "$(kubectl myaas create feature-login --template shop -o env)"
  kubectl myaas create pr-123 --template shop -o github-env >>"$GITHUB_ENV"
  kubectl myaas create -n dev-alice mine --template shared/shop`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutputFormat(o.output); err != nil {
				return err
			}
			labels, err := parseLabels(o.labels)
			if err != nil {
				return err
			}
			if _, err := parseTemplateRef(o.template, ""); err != nil {
				return err
			}
			if err := e.connectCluster(); err != nil {
				return err
			}
			conn, err := e.create(cmd.Context(), args[0], o, labels)
			if err != nil || !o.wait {
				return err
			}
			return writeConnection(e.Out, o.output, conn)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.template, "template", "t", "", "DatabaseTemplate to clone (required): NAME, or NAMESPACE/NAME for a template another namespace shares")
	f.DurationVar(&o.ttl, "ttl", 0, "delete the instance this long after its creation (e.g. 2h); 0 keeps it until deleted")
	f.Int32Var(&o.revision, "revision", 0, "template revision to clone (default: the latest)")
	f.StringArrayVarP(&o.labels, "label", "l", nil, "label key=value for the instance (repeatable)")
	f.BoolVar(&o.wait, "wait", true, "wait until Ready and print the connection details")
	f.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for Ready")
	f.StringVarP(&o.output, "output", "o", "env", "output format: "+strings.Join(outputFormats, "|"))
	_ = cmd.MarkFlagRequired("template")
	return cmd
}

// create makes the instance, or reuses an existing one of the same template, and waits for it.
func (e *env) create(ctx context.Context, name string, o *createOptions, labels map[string]string) (connection, error) {
	if err := checkInstanceName(name); err != nil {
		return connection{}, err
	}
	if o.ttl < 0 {
		return connection{}, fmt.Errorf("--ttl %s: must not be negative", o.ttl)
	}
	ref, err := parseTemplateRef(o.template, e.namespace)
	if err != nil {
		return connection{}, err
	}
	t, err := e.getTemplateAt(ctx, ref)
	switch {
	case ref.Namespace != "" && apierrors.IsForbidden(err):
		// A template of another namespace may be unreadable here: the operator says whether it
		// is shared with this namespace, in the instance's Ready condition.
	case err != nil:
		return connection{}, err
	case o.revision > 0 && !hasRevision(t, o.revision):
		return connection{}, fmt.Errorf("template %s has no revision %d (available: %s)", t.Name, o.revision, revisionList(t))
	}

	if err := e.ensureInstance(ctx, name, o, labels); err != nil {
		return connection{}, err
	}
	if !o.wait {
		fmt.Fprintf(e.Err, "instance %s created\n", name)
		return connection{}, nil
	}
	inst, err := e.waitInstance(ctx, name, o.timeout, isReady)
	if err != nil {
		return connection{}, err
	}
	return e.connection(ctx, inst)
}

// ensureInstance creates the instance, or checks that the existing one is what was asked for.
// The spec of an existing instance is left alone: an instance whose TTL was extended keeps its
// expiry, and a pinned revision cannot change anyway.
func (e *env) ensureInstance(ctx context.Context, name string, o *createOptions, labels map[string]string) error {
	for {
		inst := &myaasv1.DatabaseInstance{}
		err := e.c.Get(ctx, client.ObjectKey{Namespace: e.namespace, Name: name}, inst)
		switch {
		case apierrors.IsNotFound(err) && !isCRDMissing(err):
			err = e.c.Create(ctx, newInstanceObject(e.namespace, name, o, labels))
			if apierrors.IsAlreadyExists(err) {
				continue // a concurrent run of the same pipeline made it first
			}
			return apiError(err, "create instance "+name)
		case err != nil:
			return apiError(err, "get instance "+name)
		case inst.DeletionTimestamp != nil:
			// Deleted a moment ago (the previous pipeline's clean-up): wait for it to go, then make
			// a new one rather than fail.
			fmt.Fprintf(e.Err, "instance %s is being deleted; waiting to create it anew\n", name)
			if err := e.waitGone(ctx, name, o.timeout); err != nil {
				return err
			}
			continue
		case !sameTemplate(inst, o.template):
			return fmt.Errorf("instance %s already exists with template %s, not %s: delete it first or choose another name", name, templateRefString(inst), o.template)
		case o.revision > 0 && inst.Status.Revision != 0 && inst.Status.Revision != o.revision:
			return fmt.Errorf("instance %s already exists on revision %d, not %d", name, inst.Status.Revision, o.revision)
		}
		if missing := missingLabels(inst.Labels, labels); len(missing) > 0 || inst.Spec.Suspend {
			patch := client.MergeFrom(inst.DeepCopy())
			if inst.Labels == nil {
				inst.Labels = map[string]string{}
			}
			maps.Copy(inst.Labels, missing)
			inst.Spec.Suspend = false
			if err := e.c.Patch(ctx, inst, patch); err != nil {
				return apiError(err, "update instance "+name)
			}
		}
		fmt.Fprintf(e.Err, "instance %s exists; reusing it\n", name)
		return nil
	}
}

func newInstanceObject(ns, name string, o *createOptions, labels map[string]string) *myaasv1.DatabaseInstance {
	inst := &myaasv1.DatabaseInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{LabelCreatedBy: createdByPlugin}},
	}
	// --template was checked by create: a malformed one never gets here.
	inst.Spec.TemplateRef, _ = parseTemplateRef(o.template, ns)
	maps.Copy(inst.Labels, labels)
	if o.ttl > 0 {
		inst.Spec.TTL = &metav1.Duration{Duration: o.ttl}
	}
	if o.revision > 0 {
		inst.Spec.Revision = &o.revision
	}
	return inst
}

func missingLabels(have, want map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range want {
		if have[k] != v {
			out[k] = v
		}
	}
	return out
}

func hasRevision(t *myaasv1.DatabaseTemplate, n int32) bool {
	for _, r := range t.Status.Revisions {
		if r.Revision == n {
			return true
		}
	}
	return false
}

func revisionList(t *myaasv1.DatabaseTemplate) string {
	var ns []int
	for _, r := range t.Status.Revisions {
		ns = append(ns, int(r.Revision))
	}
	if len(ns) == 0 {
		return "none yet"
	}
	sort.Ints(ns)
	return strings.Trim(fmt.Sprint(ns), "[]")
}

// waitGone waits until the instance no longer exists.
func (e *env) waitGone(ctx context.Context, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := e.c.Get(ctx, client.ObjectKey{Namespace: e.namespace, Name: name}, &myaasv1.DatabaseInstance{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			return apiError(err, "get instance "+name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %s waiting for instance %s to be deleted", timeout, name)
		case <-time.After(pollInterval):
		}
	}
}

// parseTemplateRef reads --template: NAME, or NAMESPACE/NAME. A namespace equal to the
// instance's own (ns) is left out, as an instance of a template of its namespace has none.
func parseTemplateRef(s, ns string) (myaasv1.TemplateReference, error) {
	tns, name, cross := strings.Cut(s, "/")
	if !cross {
		tns, name = "", s
	}
	if name == "" || strings.Contains(name, "/") || (cross && tns == "") {
		return myaasv1.TemplateReference{}, fmt.Errorf("--template %q: want NAME or NAMESPACE/NAME", s)
	}
	if errs := validation.IsDNS1123Label(tns); cross && len(errs) > 0 {
		return myaasv1.TemplateReference{}, fmt.Errorf("--template %q: namespace %q: %s", s, tns, strings.Join(errs, "; "))
	}
	if tns == ns {
		tns = ""
	}
	return myaasv1.TemplateReference{Name: name, Namespace: tns}, nil
}

// sameTemplate tells whether an existing instance clones the template --template names.
func sameTemplate(inst *myaasv1.DatabaseInstance, template string) bool {
	ref, err := parseTemplateRef(template, inst.Namespace)
	want := &myaasv1.DatabaseInstance{ObjectMeta: metav1.ObjectMeta{Namespace: inst.Namespace}, Spec: myaasv1.DatabaseInstanceSpec{TemplateRef: ref}}
	return err == nil && want.TemplateKey() == inst.TemplateKey()
}

// templateRefString names an instance's template as --template takes it.
func templateRefString(inst *myaasv1.DatabaseInstance) string {
	if inst.CrossNamespace() {
		return inst.TemplateNamespace() + "/" + inst.Spec.TemplateRef.Name
	}
	return inst.Spec.TemplateRef.Name
}
