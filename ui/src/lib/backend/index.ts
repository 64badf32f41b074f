import { TauriBackend } from './tauri';
import type { Backend } from './types';
import { WebBackend } from './web';

export * from './types';

/** Inside the Tauri shell, IPC; anywhere else, straight to the gateway. */
export async function createBackend(): Promise<Backend> {
  if (typeof window !== 'undefined' && '__TAURI_INTERNALS__' in window) {
    const backend = new TauriBackend();
    await backend.init();
    return backend;
  }
  const origin =
    typeof location !== 'undefined' && /^https?:$/.test(location.protocol) ? location.origin : null;
  return new WebBackend({ defaultGateway: origin });
}
