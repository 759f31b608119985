// Package builder turns DatabaseTemplates and DatabaseInstances into the Kubernetes objects that
// implement them. Every function here is pure: no client, no clock, no randomness beyond what the
// caller passes in, so each object can be checked field by field in a table test.
package builder
