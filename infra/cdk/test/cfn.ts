// Reading both stacks into one comparable model: the SAM template (infra/template.yaml, with
// its CloudFormation tags, ForEach blocks, Globals and SAM's implicit resources) and the
// construct's synthesized template. References become symbols: `${Queue}` for a Ref,
// `${Queue.Arn}` for a GetAtt, `${AWS::Region}` for a pseudo parameter, with the construct's
// logical ids mapped to the SAM stack's names (the construct names its children after them).
import * as fs from 'node:fs';
import { CfnResource, Stack } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import * as YAML from 'yaml';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };
const NO_VALUE = Symbol('NoValue');

/** Parses a CloudFormation YAML template, turning short-form tags (`!Ref`, `!Sub`, ...) into their long form. */
export function loadYamlTemplate(file: string): Obj {
  const doc = YAML.parseDocument(fs.readFileSync(file, 'utf8'), {
    // Accept every `!Tag` and keep it on the node; the walk below turns it into `Fn::Tag`.
    customTags: (tags) => tags,
    logLevel: 'silent',
  });
  const walk = (n: unknown): Json => {
    let v: Json;
    if (YAML.isMap(n)) {
      v = {};
      for (const p of n.items) (v as Obj)[String((p.key as YAML.Scalar).value)] = walk(p.value);
    } else if (YAML.isSeq(n)) {
      v = n.items.map(walk);
    } else if (YAML.isScalar(n)) {
      v = n.value as Json;
    } else if (n === null || n === undefined) {
      v = null;
    } else {
      throw new Error(`unexpected YAML node ${String(n)}`);
    }
    const tag = (n as { tag?: string } | null)?.tag;
    if (tag && tag.startsWith('!')) {
      const name = tag.slice(1);
      if (name === 'GetAtt' && typeof v === 'string') {
        const dot = v.indexOf('.');
        v = [v.slice(0, dot), v.slice(dot + 1)];
      }
      return { [name === 'Ref' || name === 'Condition' ? name : `Fn::${name}`]: v };
    }
    return v;
  };
  return walk(doc.contents) as Obj;
}

export interface EvalContext {
  readonly params: Record<string, Json>;
  readonly conditions: Record<string, boolean>;
  /** A logical id's name in the model. */
  readonly symbol: (logicalId: string) => string;
}

/** Evaluates intrinsics to plain values, leaving references as `${symbol}` strings. */
export function evaluate(v: Json, ctx: EvalContext): Json {
  const r = ev(v, ctx);
  return r === NO_VALUE ? null : r;
}

function ev(v: Json, ctx: EvalContext): Json | typeof NO_VALUE {
  if (Array.isArray(v)) return v.map((x) => ev(x, ctx)).filter((x): x is Json => x !== NO_VALUE);
  if (v === null || typeof v !== 'object') return v;
  const keys = Object.keys(v);
  if (keys.length === 1) {
    const k = keys[0];
    const a = v[k];
    switch (k) {
      case 'Ref': {
        const id = a as string;
        if (id === 'AWS::NoValue') return NO_VALUE;
        if (id in ctx.params) return ctx.params[id];
        if (id.startsWith('AWS::')) return `\${${id}}`;
        return `\${${ctx.symbol(id)}}`;
      }
      case 'Fn::GetAtt': {
        const [id, attr] = a as string[];
        return `\${${ctx.symbol(id)}.${attr}}`;
      }
      case 'Fn::Sub': {
        const [text, vars] = typeof a === 'string' ? [a, {} as Obj] : (a as [string, Obj]);
        return text.replace(/\$\{([^}!]+)\}/g, (_, name: string) => {
          if (name in vars) return asString(evaluate(vars[name], ctx), name);
          if (name in ctx.params) return asString(ctx.params[name], name);
          if (name.startsWith('AWS::')) return `\${${name}}`;
          const dot = name.indexOf('.');
          return dot < 0 ? `\${${ctx.symbol(name)}}` : `\${${ctx.symbol(name.slice(0, dot))}${name.slice(dot)}}`;
        });
      }
      case 'Fn::Join': {
        const [sep, list] = a as [string, Json];
        return (evaluate(list, ctx) as Json[]).map((x) => asString(x, 'Fn::Join')).join(sep);
      }
      case 'Fn::If': {
        const [cond, yes, no] = a as [string, Json, Json];
        if (!(cond in ctx.conditions)) throw new Error(`unknown condition ${cond}`);
        return ev(ctx.conditions[cond] ? yes : no, ctx);
      }
      case 'Fn::Select': {
        const [i, list] = a as [number, Json];
        return (evaluate(list, ctx) as Json[])[Number(i)];
      }
      case 'Fn::Split': {
        const [sep, s] = a as [string, Json];
        return asString(evaluate(s, ctx), 'Fn::Split').split(sep);
      }
      default:
        if (k.startsWith('Fn::')) throw new Error(`intrinsic ${k} is not modelled`);
    }
  }
  const out: Obj = {};
  for (const [k, x] of Object.entries(v)) {
    const r = ev(x, ctx);
    if (r !== NO_VALUE) out[k] = r;
  }
  return out;
}

function asString(v: Json, what: string): string {
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new Error(`${what}: expected a string, got ${JSON.stringify(v)}`);
}

/** Evaluates a template's Conditions section. */
export function evalConditions(conds: Obj, params: Record<string, Json>): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  const cond = (c: Json): boolean => {
    const [k, a] = Object.entries(c as Obj)[0];
    switch (k) {
      case 'Fn::Not':
        return !cond((a as Json[])[0]);
      case 'Fn::And':
        return (a as Json[]).every(cond);
      case 'Fn::Or':
        return (a as Json[]).some(cond);
      case 'Fn::Equals': {
        const ctx = { params, conditions: out, symbol: (s: string) => s };
        const [x, y] = (a as Json[]).map((v) => evaluate(v, ctx));
        return JSON.stringify(x) === JSON.stringify(y);
      }
      case 'Condition':
        return named(a as string);
      default:
        throw new Error(`condition ${k} is not modelled`);
    }
  };
  const named = (n: string): boolean => (out[n] ??= cond(conds[n]));
  for (const n of Object.keys(conds)) named(n);
  return out;
}

/** The parameter values: the given ones, the template's defaults for the rest. */
export function parameterValues(template: Obj, given: Record<string, Json>): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const [name, p] of Object.entries((template.Parameters ?? {}) as Obj)) {
    const def = (p as Obj).Default;
    const v = name in given ? given[name] : def;
    if (v === undefined) throw new Error(`parameter ${name} needs a value`);
    const type = (p as Obj).Type as string;
    out[name] = type === 'CommaDelimitedList' && typeof v === 'string' ? v.split(',') : type === 'Number' ? Number(v) : v;
  }
  return out;
}

export interface Resource {
  readonly Type: string;
  readonly Properties?: Obj;
  readonly Condition?: string;
  readonly DeletionPolicy?: string;
  readonly UpdateReplacePolicy?: string;
  readonly Metadata?: Obj;
  /** Extra parameters in scope (a ForEach iteration's identifier). */
  readonly scope?: Record<string, Json>;
}

/** Resources with ForEach blocks expanded (each copy carrying its identifier as a parameter). */
export function expandResources(template: Obj, params: Record<string, Json>): Record<string, Resource> {
  const out: Record<string, Resource> = {};
  for (const [key, r] of Object.entries((template.Resources ?? {}) as Obj)) {
    if (key.startsWith('Fn::ForEach::')) {
      const [id, coll, fragment] = r as [string, Json, Obj];
      const values = evaluate(coll, { params, conditions: {}, symbol: (s) => s }) as string[];
      for (const value of values) {
        for (const [k, body] of Object.entries(fragment)) {
          const name = k.replace(`&{${id}}`, value.replace(/[^A-Za-z0-9]/g, '')).replace(`\${${id}}`, value);
          out[name] = { ...(body as unknown as Resource), scope: { [id]: value } };
        }
      }
    } else {
      out[key] = r as unknown as Resource;
    }
  }
  return out;
}

/** Logical id → name in the model for a synthesized stack: the construct path below `root`, without `Resource`. */
export function cdkSymbols(stack: Stack, root: IConstruct): (logicalId: string) => string {
  const map = new Map<string, string>();
  for (const c of stack.node.findAll()) {
    if (!CfnResource.isCfnResource(c)) continue;
    const id = stack.resolve((c as CfnResource).logicalId) as string;
    const rel = c.node.path.startsWith(root.node.path + '/') ? c.node.path.slice(root.node.path.length + 1) : c.node.path;
    const parts = rel.split('/').filter((p) => p !== 'Resource');
    map.set(id, parts.join('.'));
  }
  return (id) => map.get(id) ?? id;
}

export type { Json, Obj };
