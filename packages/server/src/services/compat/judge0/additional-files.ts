import { KilnError, workspacePathSchema, type JobFile } from '@kiln/core';
import yauzl from 'yauzl';

/** Bounds on a Judge0 `additional_files` zip: it is tenant input, and a zip can claim anything. */
export const ADDITIONAL_FILES_LIMITS = {
  /** Entries (files, folders, links) in the archive. */
  maxEntries: 256,
  /** Bytes of all files unpacked (the job's text limit, base64 aside). */
  maxTotalBytes: 6 * 1024 * 1024,
  /** Bytes of one file unpacked. */
  maxFileBytes: 4 * 1024 * 1024,
} as const;

interface ZipEntry {
  fileName: string;
  uncompressedSize: number;
  externalFileAttributes: number;
}
interface ZipFile {
  entryCount: number;
  eachEntry(): AsyncIterable<ZipEntry>;
  openReadStreamPromise(entry: ZipEntry): Promise<NodeJS.ReadableStream>;
}
const fromBuffer = (yauzl as unknown as { fromBufferPromise(b: Buffer, o: object): Promise<ZipFile> }).fromBufferPromise;

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;

function refused(message: string): KilnError {
  return new KilnError('VALIDATION_FAILED', message, { field: 'additional_files' });
}

/**
 * Unpacks a Judge0 `additional_files` zip (base64) into job files, never onto this host's disk. Links
 * are refused (their target would be the sandbox's to resolve, and Judge0's own worker was escaped
 * through one), as are paths that leave the workspace, more entries or bytes than the bounds, and any
 * entry whose data does not match its declared size (yauzl checks while inflating, so a zip bomb stops
 * at the bound, not at the end of its data). Folders are implied by their files' paths.
 */
export async function unpackAdditionalFiles(base64: string): Promise<JobFile[]> {
  const zip = Buffer.from(base64, 'base64');
  let archive: ZipFile;
  try {
    archive = await fromBuffer(zip, { lazyEntries: true, validateEntrySizes: true, strictFileNames: true });
  } catch (err) {
    throw refused(`additional_files is not a zip archive in base64: ${(err as Error).message}`);
  }
  if (archive.entryCount > ADDITIONAL_FILES_LIMITS.maxEntries) {
    throw refused(`additional_files has ${archive.entryCount} entries; at most ${ADDITIONAL_FILES_LIMITS.maxEntries}`);
  }
  const files: JobFile[] = [];
  let total = 0;
  try {
    for await (const entry of archive.eachEntry()) {
      const name = entry.fileName;
      if (name.endsWith('/')) continue;
      const type = (entry.externalFileAttributes >>> 16) & S_IFMT;
      if (type === S_IFLNK) throw refused(`additional_files: ${JSON.stringify(name)} is a symbolic link; links are not unpacked`);
      if (type !== 0 && type !== S_IFREG) throw refused(`additional_files: ${JSON.stringify(name)} is not a regular file`);
      if (!workspacePathSchema.safeParse(name).success) {
        throw refused(`additional_files: ${JSON.stringify(name.slice(0, 200))} leaves the workspace or is not a relative path`);
      }
      if (entry.uncompressedSize > ADDITIONAL_FILES_LIMITS.maxFileBytes || total + entry.uncompressedSize > ADDITIONAL_FILES_LIMITS.maxTotalBytes) {
        throw refused(
          `additional_files unpacks to more than ${ADDITIONAL_FILES_LIMITS.maxFileBytes} bytes per file or ${ADDITIONAL_FILES_LIMITS.maxTotalBytes} in all`,
        );
      }
      const chunks: Buffer[] = [];
      for await (const chunk of await archive.openReadStreamPromise(entry)) chunks.push(chunk as Buffer);
      const content = Buffer.concat(chunks);
      total += content.length;
      files.push({ path: name, content: content.toString('base64'), encoding: 'base64' });
    }
  } catch (err) {
    if (err instanceof KilnError) throw err;
    throw refused(`additional_files could not be unpacked: ${(err as Error).message}`);
  }
  return files;
}
