// Drafts kept per thread (by peer), surviving a reload: what was typed and not sent.

export class Drafts {
  private map: Map<string, string>;

  constructor(
    private readonly store: Pick<Storage, 'getItem' | 'setItem'> | null = safeLocalStorage(),
    private readonly key = 'airtext.drafts',
  ) {
    this.map = new Map();
    try {
      const raw = store?.getItem(key);
      if (raw) for (const [k, v] of Object.entries(JSON.parse(raw) as Record<string, string>)) this.map.set(k, v);
    } catch {
      this.map = new Map();
    }
  }

  get(peer: string): string {
    return this.map.get(peer) ?? '';
  }

  set(peer: string, text: string): void {
    if (text.trim() === '') this.map.delete(peer);
    else this.map.set(peer, text);
    try {
      this.store?.setItem(this.key, JSON.stringify(Object.fromEntries(this.map)));
    } catch {
      // storage full or unavailable: the draft stays in memory
    }
  }

  has(peer: string): boolean {
    return this.map.has(peer);
  }
}

function safeLocalStorage(): Storage | null {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}
