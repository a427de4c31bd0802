//! Migration 20261202050001 rebuilds `prospect_reply_inbox`: a database
//! holding inbox rows from before it keeps them (category, flags, times), with
//! their campaign filled in, and then accepts the new categories.

use std::borrow::Cow;

use koldly::db::Db;
use sqlx::migrate::Migrator;

use crate::on_both;
use crate::support::{Backend, TestDb};

const INBOX_MIGRATION: i64 = 20261202050001;

async fn inbox_rows_survive_the_rebuild(backend: Backend) {
    let (_db, url) = TestDb::create(backend).await;
    sqlx::any::install_default_drivers();
    let dir = match backend {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    };
    let mut before = Migrator::new(std::path::Path::new(dir)).await.unwrap();
    let earlier: Vec<_> = before
        .migrations
        .iter()
        .filter(|m| m.version < INBOX_MIGRATION)
        .cloned()
        .collect();
    before.migrations = Cow::Owned(earlier);
    let url = if backend == Backend::Sqlite {
        format!("{url}?mode=rwc")
    } else {
        url
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    before.run(&pool).await.unwrap();
    for sql in [
        "INSERT INTO users (id, email, name, created_at, updated_at) \
         VALUES ('u1', 'ann@example.com', 'Ann', 1, 1)",
        "INSERT INTO campaigns (id, user_id, name, created_at, updated_at) \
         VALUES ('c1', 'u1', 'Outreach', 1, 1)",
        "INSERT INTO prospects (id, campaign_id, user_id, email, created_at, updated_at) \
         VALUES ('p1', 'c1', 'u1', 'lead@acme.example', 1, 1)",
        "INSERT INTO prospect_replies (id, prospect_id, campaign_id, from_email, body, \
         provider_message_id, received_at, created_at) \
         VALUES ('r1', 'p1', 'c1', 'lead@acme.example', 'Out of office', 'x@y', 5, 5)",
        "INSERT INTO prospect_reply_inbox (id, reply_id, user_id, category, is_read, \
         is_archived, received_at, created_at) VALUES ('i1', 'r1', 'u1', 'out_of_office', 1, 0, 5, 6)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let db = Db::connect(&url).await.unwrap();
    let row: (String, String, String, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT reply_id, campaign_id, category, is_read, is_archived, received_at, updated_at \
         FROM prospect_reply_inbox WHERE id = 'i1'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "r1".to_owned(),
            "c1".to_owned(),
            "out_of_office".to_owned(),
            1,
            0,
            5,
            6
        )
    );
    sqlx::query("UPDATE prospect_reply_inbox SET category = 'objection' WHERE id = 'i1'")
        .execute(&db.pool)
        .await
        .unwrap();
    let refused = sqlx::query("UPDATE prospect_reply_inbox SET category = 'spam' WHERE id = 'i1'")
        .execute(&db.pool)
        .await;
    assert!(
        refused.is_err(),
        "the CHECK still refuses unknown categories"
    );
    db.pool.close().await;
}

on_both!(inbox_rows_survive_the_rebuild);
