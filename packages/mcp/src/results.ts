import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { KilnError } from '@kiln/core';
import { KilnApiError } from '@kiln/sdk';

/**
 * What one tool answers inline at most, per text field (stdout, stderr, a file, an artifact). Past it
 * the answer says it was truncated and names where the whole is (an artifact id, a job id).
 */
export const INLINE_TEXT_MAX_CHARS = 32 * 1024;

/** A text cut to `max` characters, and whether it was. */
export function capText(text: string | null | undefined, max = INLINE_TEXT_MAX_CHARS): { text: string; truncated: boolean } {
  const value = text ?? '';
  return value.length > max ? { text: value.slice(0, max), truncated: true } : { text: value, truncated: false };
}

/** How a job or a command ended, in the same fields for both. */
export function outcome(run: {
  status: string;
  verdict: string | null;
  exit_status: { code: number | null; signal: string | null } | null;
  resource_usage: unknown;
}) {
  return {
    status: run.status,
    verdict: run.verdict,
    exit_code: run.exit_status?.code ?? null,
    signal: run.exit_status?.signal ?? null,
    resource_usage: run.resource_usage,
  };
}

/** A successful tool result: the structured answer, and the same as JSON text for clients that read only text. */
export function toolResult(structured: Record<string, unknown>, extra: CallToolResult['content'] = []): CallToolResult {
  return { content: [{ type: 'text', text: JSON.stringify(structured) }, ...extra], structuredContent: structured };
}

/**
 * A failed call as a tool result (`isError: true`), never a protocol failure: the agent reads kiln's
 * stable code (`NOT_FOUND`, `POLICY_VIOLATION`, …), the message and the field at fault, and can act.
 */
export function toolError(err: unknown): CallToolResult {
  const error = describe(err);
  return {
    isError: true,
    content: [{ type: 'text', text: `${error.code}: ${error.message}${error.field ? ` (field: ${error.field})` : ''}` }],
    structuredContent: { error },
  };
}

interface ToolErrorBody {
  code: string;
  message: string;
  status?: number;
  field?: string;
  retry_after?: number;
  /** a policy violation's ceiling */
  ceiling?: unknown;
}

function describe(err: unknown): ToolErrorBody {
  if (err instanceof KilnApiError) {
    const problem = err.problem as Record<string, unknown>;
    return {
      code: err.code,
      // The SDK's message starts with the code: the problem's own detail reads better after it.
      message: typeof problem.detail === 'string' ? problem.detail : err.message,
      ...(err.status > 0 ? { status: err.status } : {}),
      ...(err.field ? { field: err.field } : {}),
      ...(typeof problem.retry_after === 'number' ? { retry_after: problem.retry_after } : {}),
      ...(problem.ceiling !== undefined ? { ceiling: problem.ceiling } : {}),
    };
  }
  if (err instanceof KilnError) return { code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) };
  // A failure that is not an answer of kiln's (the control plane unreachable, a bug): still a result.
  const name = (err as { name?: string })?.name;
  const code = name === 'ConnectionError' ? 'UNREACHABLE' : name === 'TimeoutError' ? 'TIMEOUT' : 'INTERNAL';
  return { code, message: err instanceof Error ? err.message : String(err) };
}

/** Runs a tool body; whatever it throws comes back as a tool error result. */
export async function guarded(body: () => Promise<CallToolResult>): Promise<CallToolResult> {
  try {
    return await body();
  } catch (err) {
    return toolError(err);
  }
}
