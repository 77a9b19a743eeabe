// Words in the user's language (docs/APP.md §5): assets/i18n/{lang}.json, flat keys, `{name}`
// placeholders, plurals as objects by CLDR category (chosen by Intl.PluralRules), times by
// Intl.DateTimeFormat. Before unlock the browser's language, after it the profile's.

export const LANGUAGES = ["en", "fr", "ar"];
const RTL = ["ar"];

let lang = "en";
let words = {};
let english = {};
let plurals = new Intl.PluralRules("en");

async function fetchCatalogue(l) {
  const r = await fetch(`/assets/i18n/${l}.json`, { cache: "no-store" });
  if (!r.ok) throw new Error(`catalogue ${l}: http ${r.status}`);
  return r.json();
}

/** The first of the browser's languages we have, else English. */
export function browserLanguage() {
  for (const l of navigator.languages || [navigator.language || "en"]) {
    const base = l.toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return "en";
}

export function language() { return lang; }

/** Loads `l`'s catalogue and sets the document's lang and dir. */
export async function setLanguage(l) {
  if (!LANGUAGES.includes(l)) l = "en";
  // Every catalogue has all of English's keys (tests/i18n.rs), so English is fetched only when
  // it is the language: a missing key would show as itself, never break the page.
  words = l === "en" && english.app_name ? english : await fetchCatalogue(l);
  if (l === "en") english = words;
  lang = l;
  plurals = new Intl.PluralRules(l);
  document.documentElement.lang = l;
  document.documentElement.dir = RTL.includes(l) ? "rtl" : "ltr";
}

function fill(text, vars) {
  return text.replace(/\{(\w+)\}/g, (whole, name) => {
    if (!(name in vars)) return whole;
    const v = vars[name];
    return typeof v === "number" ? number(v) : String(v);
  });
}

/**
 * The text of `key` with `vars` filled in. A plural entry ({one: …, other: …}) is chosen by
 * `vars.count`. A key missing in the language falls back to English if it was loaded, then to
 * the key itself.
 */
export function t(key, vars = {}) {
  let v = words[key] ?? english[key] ?? key;
  if (typeof v === "object") v = v[plurals.select(vars.count ?? 0)] ?? v.other;
  return fill(v, vars);
}

/**
 * Like t(), as a list of pieces for a template: strings, and the values of `vars` as given, so
 * a name can go in as an element (<bdi>) rather than as text inside the sentence.
 */
export function tParts(key, vars = {}) {
  const text = t(key, Object.fromEntries(Object.entries(vars).filter(([, v]) => typeof v !== "object")));
  return text.split(/\{(\w+)\}/).map((piece, i) => (i % 2 === 1 && piece in vars ? vars[piece] : piece));
}

export function number(n, options) {
  return new Intl.NumberFormat(lang, options).format(n);
}

/** A time for a list or a message: the hour today, else the date (and the hour if this year). */
export function when(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  const opts = sameDay
    ? { hour: "numeric", minute: "2-digit" }
    : d.getFullYear() === now.getFullYear()
      ? { day: "numeric", month: "short", hour: "numeric", minute: "2-digit" }
      : { day: "numeric", month: "short", year: "numeric" };
  return new Intl.DateTimeFormat(lang, opts).format(d);
}

/** A full date and time, for a title or a screen reader. */
export function fullTime(ms) {
  return new Intl.DateTimeFormat(lang, { dateStyle: "long", timeStyle: "short" }).format(new Date(ms));
}

/** A byte count as MB (one decimal under 10). */
export function megabytes(bytes) {
  const mb = bytes / 1e6;
  return number(mb, { maximumFractionDigits: mb < 10 ? 1 : 0 });
}

/** A delay in seconds or minutes, in words. */
export function duration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 90) return t("seconds", { count: s });
  return t("minutes", { count: Math.round(s / 60) });
}

/** A longer span, from seconds: seconds, minutes, hours (one decimal under 10), or days. */
export function span(secs) {
  if (secs < 90) return t("seconds", { count: Math.max(1, Math.round(secs)) });
  const min = secs / 60;
  if (min < 90) return t("minutes", { count: Math.round(min) });
  const h = min / 60;
  if (h < 48) {
    const count = h < 10 ? Math.round(h * 10) / 10 : Math.round(h);
    return t("hours", { count });
  }
  return t("days", { count: Math.round(h / 24) });
}

/** A size in bytes as the language writes it: bytes, kB, MB (one decimal under 10). */
export function bytes(n) {
  const [unit, v] = n < 1000 ? ["byte", n] : n < 1e6 ? ["kilobyte", n / 1e3] : ["megabyte", n / 1e6];
  return number(v, { style: "unit", unit, unitDisplay: unit === "byte" ? "long" : "short", maximumFractionDigits: v < 10 && unit !== "byte" ? 1 : 0 });
}

/** A voice note's length as minutes:seconds ("0:30"). */
export function clock(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return `${number(Math.floor(s / 60))}:${number(s % 60, { minimumIntegerDigits: 2 })}`;
}

/** A share (0..1) as a percentage, rounded down (a transfer at 99.6% is not done). */
export function percent(share) {
  return number(Math.floor(Math.min(1, Math.max(0, share)) * 100) / 100, { style: "percent" });
}
