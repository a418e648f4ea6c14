// Paths under /ui. The server answers every /ui path with the page, so a
// reload or a shared link lands on the same view.

import { useEffect, useState } from 'preact/hooks';

export const BASE = '/ui';

export type Route =
  | { view: 'run' }
  | { view: 'sessions' }
  | { view: 'session'; id: string }
  | { view: 'runs'; id?: string };

export function parse(pathname: string): Route {
  const rest = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : pathname;
  const parts = rest.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'sessions') return parts[1] ? { view: 'session', id: parts[1] } : { view: 'sessions' };
  if (parts[0] === 'runs') return { view: 'runs', id: parts[1] };
  return { view: 'run' };
}

export function href(...parts: string[]): string {
  return [BASE, ...parts.map(encodeURIComponent)].join('/');
}

export function navigate(to: string): void {
  if (to !== location.pathname) history.pushState(null, '', to);
  window.dispatchEvent(new Event('orchestra:navigate'));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.pathname));
  useEffect(() => {
    const update = () => setRoute(parse(location.pathname));
    window.addEventListener('popstate', update);
    window.addEventListener('orchestra:navigate', update);
    return () => {
      window.removeEventListener('popstate', update);
      window.removeEventListener('orchestra:navigate', update);
    };
  }, []);
  return route;
}

/** Props for an <a> that navigates inside the console without a reload. */
export function link(to: string) {
  return {
    href: to,
    onClick: (e: MouseEvent) => {
      if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      navigate(to);
    },
  };
}
