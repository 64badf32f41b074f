import { flushSync, mount, unmount, type Component } from 'svelte';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { TextPlan } from '../../src/lib/bindings/TextPlan';
import Composer from '../../src/lib/components/Composer.svelte';
import PathBadge from '../../src/lib/components/PathBadge.svelte';
import StatusTicks from '../../src/lib/components/StatusTicks.svelte';
import MessageBubble from '../../src/lib/components/MessageBubble.svelte';
import { Drafts } from '../../src/lib/drafts';
import { msg } from './helpers';

let mounted: ReturnType<typeof mount>[] = [];
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function render(component: Component<any, any, any>, props: Record<string, unknown>): HTMLElement {
  const target = document.createElement('div');
  document.body.appendChild(target);
  mounted.push(mount(component, { target, props }));
  flushSync();
  return target;
}
afterEach(() => {
  for (const m of mounted) unmount(m);
  mounted = [];
  document.body.innerHTML = '';
  vi.useRealTimers();
});

function memoryDrafts(): Drafts {
  const data = new Map<string, string>();
  return new Drafts({ getItem: (k) => data.get(k) ?? null, setItem: (k, v) => void data.set(k, v) });
}

describe('StatusTicks', () => {
  it.each([
    ['queued', 'Queued'],
    ['sending', 'Sending'],
    ['sent', 'Sent'],
    ['delivered', 'Delivered'],
    ['failed', 'Not sent'],
  ] as const)('%s is labelled for screen readers', (status, label) => {
    const el = render(StatusTicks, { status });
    const ticks = el.querySelector('[data-status]')!;
    expect(ticks.getAttribute('data-status')).toBe(status);
    expect(ticks.querySelector('.visually-hidden')?.textContent).toBe(label);
    expect(ticks.querySelector('svg')).not.toBeNull();
  });
});

describe('PathBadge', () => {
  it('shows the path a message took', () => {
    expect(render(PathBadge, { route: 'in_network' }).textContent?.trim()).toBe('Airtext');
    const cloud = render(PathBadge, { route: 'carrier' }).querySelector('[data-route]')!;
    expect(cloud.getAttribute('data-route')).toBe('carrier');
    expect(cloud.getAttribute('aria-label')).toContain('cloud');
    expect(render(PathBadge, { route: 'cellular' }).textContent?.trim()).toBe('Cellular');
  });

  it('shows nothing while the route is unknown', () => {
    expect(render(PathBadge, { route: null, path: 'cloud' }).querySelector('[data-route]')).toBeNull();
  });
});

describe('MessageBubble', () => {
  it('offers Retry on a failed message and says why', () => {
    const onretry = vi.fn();
    const m = msg({ key: 'a', status: 'failed', failure_reason: 'The carrier refused it.' });
    const el = render(MessageBubble, { message: m, onretry });
    expect(el.textContent).toContain('The carrier refused it.');
    (el.querySelector('[data-testid=retry]') as HTMLButtonElement).click();
    expect(onretry).toHaveBeenCalledWith(m);
  });

  it('shows ticks only on outbound messages', () => {
    expect(render(MessageBubble, { message: msg({ key: 'a', status: 'sent' }) }).querySelector('.ticks')).not.toBeNull();
    expect(render(MessageBubble, { message: msg({ key: 'b', direction: 'inbound' }) }).querySelector('.ticks')).toBeNull();
  });
});

describe('Composer', () => {
  const plans: Record<string, TextPlan> = {
    hi: { encoding: 'gsm7', segments: 1, chars_left: 158, parts: ['hi'], ucs2_characters: [] },
    'hi 😀': { encoding: 'ucs2', segments: 1, chars_left: 65, parts: ['hi 😀'], ucs2_characters: ['😀'] },
  };

  function setup(plan: (t: string) => Promise<TextPlan | null> = async (t) => plans[t] ?? null) {
    vi.useFakeTimers();
    const onsend = vi.fn();
    const drafts = memoryDrafts();
    const el = render(Composer, { peer: '+1', backend: { plan }, drafts, onsend });
    const ta = el.querySelector('textarea')!;
    const type = async (value: string) => {
      ta.value = value;
      ta.dispatchEvent(new Event('input', { bubbles: true }));
      flushSync();
      await vi.advanceTimersByTimeAsync(200);
      flushSync();
    };
    return { el, ta, onsend, drafts, type };
  }

  it('shows the live counter from the backend plan', async () => {
    const { el, type } = setup();
    await type('hi');
    expect(el.querySelector('[data-testid=counter]')?.textContent).toContain('GSM-7 · 1 SMS · 158 left');
    expect(el.querySelector('[data-testid=ucs2-hint]')).toBeNull();
  });

  it('names the character that forces UCS-2', async () => {
    const { el, type } = setup();
    await type('hi 😀');
    expect(el.querySelector('[data-testid=counter]')?.textContent).toContain('UCS-2 · 1 SMS · 65 left');
    expect(el.querySelector('[data-testid=ucs2-hint]')?.textContent).toContain('“😀”');
  });

  it('shows no number when the plan is unavailable', async () => {
    const { el, type } = setup(async () => null);
    await type('anything');
    const counter = el.querySelector('[data-testid=counter]')!.textContent!;
    expect(counter).toContain('count unavailable');
    expect(counter).not.toMatch(/\d/);
  });

  it('Enter sends, Shift+Enter does not', async () => {
    const { ta, onsend, type } = setup();
    await type('hi');
    ta.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', shiftKey: true, bubbles: true, cancelable: true }));
    expect(onsend).not.toHaveBeenCalled();
    const e = new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true });
    ta.dispatchEvent(e);
    expect(e.defaultPrevented).toBe(true);
    expect(onsend).toHaveBeenCalledWith('hi');
    flushSync();
    expect(ta.value).toBe('');
  });

  it('keeps the draft while typing and clears it on send', async () => {
    const { ta, drafts, type } = setup();
    await type('half a thought');
    expect(drafts.get('+1')).toBe('half a thought');
    ta.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
    expect(drafts.get('+1')).toBe('');
  });

  it('shows a refusal as an alert until dismissed, and keeps a text that was not sent', async () => {
    vi.useFakeTimers();
    const drafts = memoryDrafts();
    const ondismiss = vi.fn();
    const onsend = vi.fn(() => false);
    const el = render(Composer, {
      peer: '911',
      backend: { plan: async () => null },
      drafts,
      onsend,
      refusal: '911 is an emergency number',
      ondismiss,
    });
    const alert = el.querySelector('[role="alert"]')!;
    expect(alert.textContent).toContain('911 is an emergency number');
    (el.querySelector('[data-testid="send-refused-dismiss"]') as HTMLButtonElement).click();
    expect(ondismiss).toHaveBeenCalledOnce();
    const ta = el.querySelector('textarea')!;
    ta.value = 'help';
    ta.dispatchEvent(new Event('input', { bubbles: true }));
    flushSync();
    ta.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
    await vi.advanceTimersByTimeAsync(0);
    flushSync();
    expect(onsend).toHaveBeenCalledWith('help');
    expect(ta.value).toBe('help');
    expect(drafts.get('911')).toBe('help');
  });

  it('does not send whitespace', async () => {
    const { ta, onsend, type } = setup();
    await type('   ');
    ta.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
    expect(onsend).not.toHaveBeenCalled();
  });
});
