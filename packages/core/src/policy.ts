import { z } from 'zod';
import { DEFAULT_LIMITS, limitsSchema } from './limits.js';

const hostPortPattern = z
  .string()
  .min(1)
  .max(253 + 6)
  .regex(
    /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:(\*|[0-9]{1,5}))?$/i,
    'must be host[:port], e.g. "pypi.org:443" or "*.example.com:443"',
  );

export const networkRulesSchema = z.strictObject({
  egress: z.enum(['none', 'allowlist']),
  allow: z.array(hostPortPattern).max(256).default([]),
});

export const artifactRulesSchema = z.strictObject({
  max_count: z.number().int().min(0).max(10_000),
  max_bytes: z.number().int().min(0).max(16 * 1024 ** 3),
  max_total_bytes: z.number().int().min(0).max(64 * 1024 ** 3),
});

export const sessionRulesSchema = z.strictObject({
  max_ttl_seconds: z.number().int().min(1).max(7 * 24 * 3600),
  idle_timeout_seconds: z.number().int().min(1).max(7 * 24 * 3600),
  max_active: z.number().int().min(0).max(10_000),
});

export const serviceRulesSchema = z.strictObject({
  allowed: z.boolean(),
  max_running: z.number().int().min(0).max(10_000),
  /** a service may be opened without a key or token (`public: true`). @default false */
  allow_public: z.boolean().default(false),
  /** the longest a service may run (its `ttl_seconds`). @default 86400 */
  max_ttl_seconds: z.number().int().min(1).max(30 * 24 * 3600).default(24 * 3600),
});

export const concurrencyRulesSchema = z.strictObject({
  max_running_jobs: z.number().int().min(1).max(100_000),
});

/** Language names as the catalog spells them: lower case, short. */
export const languageNameSchema = z
  .string()
  .regex(/^[a-z][a-z0-9+#-]{0,31}$/, 'must be a language name such as "python"');

/** A policy's ruleset: the one schema every version is validated against (ARCHITECTURE.md §4). */
export const rulesetSchema = z.strictObject({
  languages: z.array(languageNameSchema).max(128),
  limits: limitsSchema,
  network: networkRulesSchema,
  artifacts: artifactRulesSchema,
  sessions: sessionRulesSchema.describe('bounds of persistent sessions, applied where this server serves sessions'),
  services: serviceRulesSchema.describe('whether services may run, how many at once, for how long, and whether they may be public'),
  concurrency: concurrencyRulesSchema,
});

export type Ruleset = z.infer<typeof rulesetSchema>;
/** What a client may send as a ruleset (fields with defaults are optional). */
export type RulesetInput = z.input<typeof rulesetSchema>;

/**
 * Every language of the runner's catalog (packages/runner/src/languages/catalog): a tenant without
 * policies may use whatever the fleet offers; each fits the default limits (measured: Kotlin and Scala
 * compile in about 2.5 CPU-seconds under 256 MiB and 64 pids).
 */
export const DEFAULT_LANGUAGES: readonly string[] = [
  'python', 'pypy', 'node', 'typescript', 'coffeescript', 'bash', 'sh', 'zsh', 'perl', 'raku', 'tcl', 'ruby', 'php',
  'lua', 'luajit', 'r', 'octave', 'awk', 'bc', 'sqlite', 'basic', 'forth', 'c', 'cpp', 'go', 'rust', 'fortran',
  'pascal', 'd', 'nim', 'crystal', 'ada', 'cobol', 'nasm', 'java', 'kotlin', 'scala', 'groovy', 'clojure', 'csharp',
  'haskell', 'ocaml', 'erlang', 'elixir', 'racket', 'scheme', 'commonlisp', 'prolog',
];

/** What a tenant without policies gets: safe limits, no network. */
export const DEFAULT_RULESET: Ruleset = {
  languages: [...DEFAULT_LANGUAGES],
  limits: { ...DEFAULT_LIMITS },
  network: { egress: 'none', allow: [] },
  artifacts: { max_count: 32, max_bytes: 16 * 1024 * 1024, max_total_bytes: 64 * 1024 * 1024 },
  sessions: { max_ttl_seconds: 3600, idle_timeout_seconds: 600, max_active: 10 },
  services: { allowed: false, max_running: 2, allow_public: false, max_ttl_seconds: 24 * 3600 },
  concurrency: { max_running_jobs: 20 },
};

export const DEFAULT_POLICY_NAME = 'default';
