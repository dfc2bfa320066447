/**
 * The syntax tree produced by the parser (grammar/rules.peggy).
 *
 * Details: every node carries a `span` into its source file. The tree keeps the
 * file's shape only; names are resolved and literals classified by the checker
 * (see `Ir.ts` for the checked form).
 */

export interface Pos { readonly offset: number; readonly line: number; readonly column: number }
export interface Span { readonly file: string; readonly start: Pos; readonly end: Pos }

export interface Ident { readonly text: string; readonly span: Span }

/** A bare literal: name, address, CIDR, host:port, number, duration, size, rate, range, URL, time window. */
export interface BareToken { readonly kind: "bare"; readonly text: string; readonly span: Span }
export interface StringToken { readonly kind: "string"; readonly value: string; readonly span: Span }
/** `[a, b]` (bracket) or `{80, 443}` (brace, only inside conditions). */
export interface ListToken { readonly kind: "list"; readonly open: "bracket" | "brace"; readonly items: ReadonlyArray<Token>; readonly span: Span }
/** `env(NAME)`, `file("path")`, `failover(a, b)`. */
export interface CallToken { readonly kind: "call"; readonly name: string; readonly args: ReadonlyArray<Token>; readonly span: Span }
export interface ArrowToken { readonly kind: "arrow"; readonly span: Span }
export type Token = BareToken | StringToken | ListToken | CallToken | ArrowToken

/** One line (or `;`-separated part) of a `{ ... }` block. */
export interface BlockLine { readonly tokens: ReadonlyArray<Token>; readonly block?: ReadonlyArray<BlockLine>; readonly span: Span }

/** `KEYWORD [NAME =] token* [{ line* }]` */
export interface DeclNode {
  readonly kind: "decl"
  readonly keyword: Ident
  readonly name?: Ident
  readonly args: ReadonlyArray<Token>
  readonly block?: ReadonlyArray<BlockLine>
  readonly span: Span
}

export type ActionNode =
  | { readonly kind: "allow"; readonly span: Span }
  | { readonly kind: "block"; readonly message?: StringToken; readonly span: Span }
  | { readonly kind: "redirect"; readonly target: StringToken | BareToken; readonly span: Span }
  | { readonly kind: "via"; readonly target: Ident; readonly else?: ActionNode; readonly span: Span }
  | { readonly kind: "tor"; readonly target?: Ident; readonly span: Span }

export interface OperatorNode { readonly text: "==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in" | "suffix" | "matches" | "regex"; readonly implicit?: boolean; readonly span: Span }

export type ExprNode =
  | { readonly kind: "and"; readonly items: ReadonlyArray<ExprNode>; readonly span: Span }
  | { readonly kind: "or"; readonly items: ReadonlyArray<ExprNode>; readonly span: Span }
  | { readonly kind: "not"; readonly expr: ExprNode; readonly span: Span }
  | { readonly kind: "paren"; readonly expr: ExprNode; readonly span: Span }
  | { readonly kind: "cmp"; readonly field: Ident; readonly op: OperatorNode; readonly value: Token; readonly span: Span }
  | { readonly kind: "time"; readonly field: Ident; readonly specs: ReadonlyArray<BareToken>; readonly tz?: StringToken; readonly span: Span }

export interface RuleNode {
  readonly kind: "rule" | "guard"
  readonly name: Ident
  readonly when?: ExprNode
  readonly action: ActionNode
  readonly modifiers: ReadonlyArray<Token>
  readonly span: Span
}
export interface DefaultNode { readonly kind: "default"; readonly action: ActionNode; readonly modifiers: ReadonlyArray<Token>; readonly span: Span }
export type PolicyItemNode = RuleNode | DefaultNode

export interface PolicyNode { readonly kind: "policy"; readonly name: Ident; readonly items: ReadonlyArray<PolicyItemNode>; readonly span: Span }

export type ExpectActionNode =
  | { readonly kind: "allow"; readonly span: Span }
  | { readonly kind: "block"; readonly message?: StringToken; readonly span: Span }
  | { readonly kind: "redirect"; readonly target?: StringToken | BareToken; readonly span: Span }
  | { readonly kind: "via"; readonly target: Ident; readonly span: Span }
  | { readonly kind: "tor"; readonly target?: Ident; readonly span: Span }

export interface TestNode {
  readonly kind: "test"
  readonly name: StringToken
  readonly body: ReadonlyArray<BlockLine>
  readonly expect: { readonly action: ExpectActionNode; readonly rule?: Ident; readonly span: Span }
  readonly span: Span
}

export type ItemNode = DeclNode | PolicyNode | TestNode

export interface CommentNode { readonly text: string; readonly span: Span }

export interface FileNode { readonly kind: "file"; readonly items: ReadonlyArray<ItemNode>; readonly comments: ReadonlyArray<CommentNode> }
