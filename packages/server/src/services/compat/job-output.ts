import type { Job } from '@kiln/core';
import type { Principal } from '../context.js';
import type { JobDeps } from '../job-deps.js';
import { openTenantArtifact } from '../artifacts.js';

/** Bytes of one stream a compatibility answer carries at most (the artifacts keep all of it). */
export const COMPAT_OUTPUT_MAX_BYTES = 8 * 1024 * 1024;

/**
 * A job's stdout and stderr as bytes: inline when the job carries them (small output), else read from
 * its output artifacts, up to COMPAT_OUTPUT_MAX_BYTES each. Piston and Judge0 answer the whole output,
 * not kiln's 64 KiB inline preview.
 */
export async function jobOutput(deps: JobDeps, principal: Principal, job: Job): Promise<{ stdout: Buffer; stderr: Buffer }> {
  const read = async (inline: string | null | undefined, ref: string | null | undefined): Promise<Buffer> => {
    // The inline copy is text: bytes that were not UTF-8 became U+FFFD there, the artifact has them.
    if (inline !== null && inline !== undefined && (!inline.includes('\uFFFD') || !ref)) return Buffer.from(inline, 'utf8');
    if (!ref) return Buffer.alloc(0);
    const { body } = await openTenantArtifact(deps, principal, ref);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      const bytes = chunk as Buffer;
      chunks.push(bytes.subarray(0, Math.max(0, COMPAT_OUTPUT_MAX_BYTES - size)));
      size += bytes.length;
      if (size >= COMPAT_OUTPUT_MAX_BYTES) {
        body.destroy();
        break;
      }
    }
    return Buffer.concat(chunks);
  };
  return {
    stdout: await read(job.stdout, job.output_refs?.stdout),
    stderr: await read(job.stderr, job.output_refs?.stderr),
  };
}
