import type { Artifact } from '@kiln/core';
import type { KilnClient } from '@kiln/sdk';
import { ResourceTemplate, type McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { asText, readAtMost } from '../bounded-read.js';
import { guarded, INLINE_TEXT_MAX_CHARS, toolResult } from '../results.js';
import { idSchema } from './ids.js';

/** The URI of an artifact as an MCP resource (read with resources/read). */
export const artifactUri = (id: string) => `kiln://artifacts/${encodeURIComponent(id)}`;

/** The most a resources/read of an artifact answers (base64 in one JSON-RPC message). */
export const RESOURCE_MAX_BYTES = 8 * 1024 * 1024;

const getArtifactInput = z.object({
  artifact_id: idSchema('art', 'the artifact id (from run_code\'s artifact_ids, stdout_artifact_id or stderr_artifact_id)'),
  max_chars: z.number().int().min(1).max(INLINE_TEXT_MAX_CHARS).optional().describe(`how much text to return at most; default ${INLINE_TEXT_MAX_CHARS}`),
});

const resourceId = z.string().min(1).max(128).regex(/^[A-Za-z0-9_-]+$/);

async function content(client: KilnClient, id: string, maxBytes: number) {
  const response = await client.requestRaw('GET', `/v1/artifacts/${encodeURIComponent(id)}/content`, { accept: '*/*', timeoutMs: 60_000 });
  return readAtMost(response.body, maxBytes);
}

export function registerArtifactTools(server: McpServer, client: KilnClient): void {
  server.registerTool(
    'get_artifact',
    {
      title: 'Get an artifact',
      description:
        'An artifact (a job\'s stdout or stderr, or a file it left) by id. Text comes back inline, capped at `max_chars` ' +
        `(default and most ${INLINE_TEXT_MAX_CHARS}), saying when it was cut; binary content comes back as a resource link ` +
        `(kiln://artifacts/{id}) to read with resources/read (up to ${RESOURCE_MAX_BYTES} bytes) or to download from kiln's ` +
        'HTTP API at /v1/artifacts/{id}/content.',
      inputSchema: getArtifactInput,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    ({ artifact_id, max_chars }) =>
      guarded(async () => {
        const artifact = await client.artifacts.get(artifact_id);
        const max = max_chars ?? INLINE_TEXT_MAX_CHARS;
        // UTF-8 takes at most 4 bytes a character: this many bytes hold `max` characters.
        const { bytes, truncated } = await content(client, artifact_id, max * 4);
        const text = asText(bytes, truncated);
        const about = describeArtifact(artifact);
        if (text !== null) {
          const cut = truncated || text.length > max;
          return toolResult({
            ...about,
            kind: 'text',
            text: text.slice(0, max),
            truncated: cut,
            ...(cut ? { note: `shown: the first ${max} characters of ${artifact.size_bytes} bytes; the whole is at ${artifactUri(artifact.id)} (resources/read) or /v1/artifacts/${artifact.id}/content` } : {}),
          });
        }
        return toolResult({ ...about, kind: 'binary', uri: artifactUri(artifact.id) }, [
          {
            type: 'resource_link',
            uri: artifactUri(artifact.id),
            name: artifact.name,
            mimeType: 'application/octet-stream',
            description: `${artifact.size_bytes} bytes, ${artifact.checksum}`,
          },
        ]);
      }),
  );

  server.registerResource(
    'artifact',
    new ResourceTemplate('kiln://artifacts/{id}', { list: undefined }),
    { title: 'kiln artifact', description: `An artifact's bytes (up to ${RESOURCE_MAX_BYTES}), as base64.`, mimeType: 'application/octet-stream' },
    async (uri, variables) => {
      const id = resourceId.parse(String(variables.id));
      const artifact = await client.artifacts.get(id);
      if (artifact.size_bytes > RESOURCE_MAX_BYTES) {
        throw new Error(`artifact ${id} has ${artifact.size_bytes} bytes, more than ${RESOURCE_MAX_BYTES} a resource answers: download /v1/artifacts/${id}/content instead`);
      }
      const { bytes } = await content(client, id, RESOURCE_MAX_BYTES);
      return { contents: [{ uri: uri.href, mimeType: 'application/octet-stream', blob: Buffer.from(bytes).toString('base64') }] };
    },
  );
}

function describeArtifact(a: Artifact) {
  return { artifact_id: a.id, name: a.name, size_bytes: a.size_bytes, checksum: a.checksum, owner_type: a.owner_type, owner_id: a.owner_id };
}
